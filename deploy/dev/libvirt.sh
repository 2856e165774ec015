# libvirtd + virtlogd (sourced by `stack`), started without systemd.
#
# libvirtd runs with `--listen` and its own config file
# ($STACK_DIR/libvirt/libvirtd.conf, passed with `-f`), so besides the default
# unix sockets (qemu:///system) it listens on
#
#   qemu+tcp://127.0.0.1/system                              TCP 127.0.0.1:16509, auth_tcp = "none"
#   qemu+tls://localhost/system?pkipath=$PKI_DIR/libvirt     TLS 127.0.0.1:16514, the stack CA of
#                                                            pki.sh, client certificate required
#
# the way a compute host with `[libvirt] connection_uri = qemu+tcp://...` or
# Kolla's `libvirt_tls` is reached. Since libvirt 5.6 the TCP/TLS listeners
# come from systemd socket units; without systemd, `--listen` plus
# listen_tcp / listen_tls in the config is the way. `pki_up` must have run
# first (the server certificate, key and CA live in $PKI_DIR/libvirt).
#
# A libvirtd that is running without these listeners (an older stack) or
# with a different config is restarted: running QEMU guests survive a
# libvirtd restart (libvirtd reconnects to them on start).

LIBVIRT_URI=qemu:///system
LIBVIRT_TCP_PORT=16509
LIBVIRT_TLS_PORT=16514
LIBVIRT_PKI_DIR="${PKI_DIR:-$STACK_DIR/pki}/libvirt"
LIBVIRT_TCP_URI="qemu+tcp://127.0.0.1/system"
LIBVIRT_TLS_URI="qemu+tls://localhost/system?pkipath=$LIBVIRT_PKI_DIR"
LIBVIRT_CONF_DIR="$STACK_DIR/libvirt"
LIBVIRTD_CONF="$LIBVIRT_CONF_DIR/libvirtd.conf"
LIBVIRTD_PIDFILE="$RUN_DIR/libvirtd.pid"

libvirt_running() { virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

# Both network listeners answer (TLS: the client certificate is accepted).
libvirt_listening() {
    virsh -c "$LIBVIRT_TCP_URI" version >/dev/null 2>&1 &&
        virsh -c "$LIBVIRT_TLS_URI" version >/dev/null 2>&1
}

_libvirtd_conf() {
    cat <<EOF
# Written by deploy/dev/libvirt.sh; libvirtd is started with --listen -f <this file>.
# The unix sockets keep their defaults (/run/libvirt/libvirt-sock, -ro, -admin).
listen_tcp = 1
listen_tls = 1
listen_addr = "127.0.0.1"
tcp_port = "$LIBVIRT_TCP_PORT"
tls_port = "$LIBVIRT_TLS_PORT"
# Loopback only, test stack: no SASL on TCP. TLS authenticates by client certificate.
auth_tcp = "none"
auth_tls = "none"
key_file = "$LIBVIRT_PKI_DIR/serverkey.pem"
cert_file = "$LIBVIRT_PKI_DIR/servercert.pem"
ca_file = "$LIBVIRT_PKI_DIR/cacert.pem"
# Client certificates must be signed by the stack CA (tls_no_verify_certificate
# stays at its default 0) and carry this subject (pki.sh's client certificate).
tls_allowed_dn_list = ["CN=stack-client"]
# The daemon drops clients that stop answering after 5 s * (5 + 1).
keepalive_interval = 5
keepalive_count = 5
EOF
}

# The pid of the running libvirtd (pid file first, else by exact name).
_libvirtd_pid() {
    if [[ -s "$LIBVIRTD_PIDFILE" ]] && kill -0 "$(cat "$LIBVIRTD_PIDFILE")" 2>/dev/null; then
        cat "$LIBVIRTD_PIDFILE"
    else
        pgrep -x libvirtd | head -n 1
    fi
}

# SIGTERM and wait until it has exited (its pid file lock must be free
# before a new libvirtd can start).
_libvirtd_stop() {
    local pid
    pid="$(_libvirtd_pid)" || true
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        (( SECONDS < deadline )) || die "libvirtd (pid $pid) did not exit after SIGTERM"
        sleep 0.2
    done
}

libvirt_up() {
    [[ -f "$LIBVIRT_PKI_DIR/servercert.pem" ]] || die "no libvirt server certificate in $LIBVIRT_PKI_DIR (run pki_up first)"
    if ! pgrep -x virtlogd >/dev/null; then
        say "starting virtlogd"
        virtlogd -d
    fi
    mkdir -p "$LIBVIRT_CONF_DIR"
    local conf changed=0
    conf="$(_libvirtd_conf)"
    if [[ ! -f "$LIBVIRTD_CONF" ]] || [[ "$(cat "$LIBVIRTD_CONF")" != "$conf" ]]; then
        printf '%s\n' "$conf" >"$LIBVIRTD_CONF.tmp" && mv "$LIBVIRTD_CONF.tmp" "$LIBVIRTD_CONF"
        changed=1
    fi
    if libvirt_running; then
        if (( changed )) || ! libvirt_listening; then
            say "restarting libvirtd with the network listeners ($LIBVIRTD_CONF); guests keep running"
            _libvirtd_stop
        else
            return 0
        fi
    fi
    if ! libvirt_running; then
        say "starting libvirtd"
        _libvirtd_stop  # a hung one that no longer answers
        libvirtd -d --listen -f "$LIBVIRTD_CONF" --pid-file "$LIBVIRTD_PIDFILE" >>"$LOG_DIR/libvirtd.log" 2>&1
        wait_for 60 libvirt_running || die "libvirtd did not start (log: $LOG_DIR/libvirtd.log)"
    fi
    wait_for 30 libvirt_listening ||
        die "libvirtd does not answer on $LIBVIRT_TCP_URI and $LIBVIRT_TLS_URI (log: $LOG_DIR/libvirtd.log)"
}

libvirt_down() {
    if [[ -n "$(_libvirtd_pid)" ]]; then
        say "stopping libvirtd"
        _libvirtd_stop
    fi
    pgrep -x virtlogd >/dev/null && { say "stopping virtlogd"; pkill -x virtlogd; }
    return 0
}

libvirt_status() {
    if libvirt_running; then
        local listeners="no network listeners"
        libvirt_listening &&
            listeners="tcp 127.0.0.1:$LIBVIRT_TCP_PORT (auth none), tls 127.0.0.1:$LIBVIRT_TLS_PORT (stack CA)"
        echo "libvirtd      up    $LIBVIRT_URI + $listeners (libvirt $(virsh -c "$LIBVIRT_URI" version 2>/dev/null | awk '/Using library/ {print $4}'), QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}'))"
    else
        echo "libvirtd      down"
    fi
}

# libvirtd + virtlogd (sourced by `stack`), started without systemd.
#
# libvirtd runs with `--listen` and its own config file
# ($STACK_DIR/libvirt/libvirtd.conf, passed with `-f`), so besides the default
# unix sockets (qemu:///system) it listens on
#
#   qemu+tcp://127.0.0.1/system                              TCP 127.0.0.1:16509, auth_tcp = "sasl"
#                                                            (DIGEST-MD5, user nova, sasldb)
#   qemu+tls://localhost/system?pkipath=$PKI_DIR/libvirt     TLS 127.0.0.1:16514, the stack CA of
#                                                            pki.sh, client certificate required
#
# the way a compute host with `[libvirt] connection_uri = qemu+tcp://...` or
# Kolla's `libvirt_tls` is reached. The TCP listener authenticates with SASL
# the way Kolla-Ansible's default (`libvirt_enable_sasl: true`, `libvirt_tls:
# false`) does. Kolla's `libvirt_sasl_mech_list` is DIGEST-MD5 on TCP and
# SCRAM-SHA-256 only with TLS: on plain TCP libvirt requires a SASL security
# layer (min SSF 56), which SCRAM does not have -- libvirtd then lists no
# mechanism at all ("no SASL mechanisms are available"; verified here).
#
#   $STACK_DIR/libvirt/sasl2/libvirt.conf   mech_list: digest-md5, sasldb_path below
#                                           (cyrus-sasl reads it because libvirtd is
#                                           started with SASL_CONF_PATH=<that dir>;
#                                           /etc/sasl2 is left alone)
#   $STACK_DIR/libvirt/sasl2/passwd.db      the sasldb, user `nova` (saslpasswd2 -a libvirt)
#   $STACK_DIR/libvirt/sasl2/nova.password  its generated password (0600)
#   $STACK_DIR/libvirt/auth.conf            the clients' credentials, Kolla's auth.conf.j2
#                                           verbatim (Kolla: /var/lib/nova/.config/libvirt/
#                                           auth.conf); point LIBVIRT_AUTH_FILE at it
#
# Since libvirt 5.6 the TCP/TLS listeners
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
LIBVIRT_SASL_DIR="$LIBVIRT_CONF_DIR/sasl2"
LIBVIRT_SASL_DB="$LIBVIRT_SASL_DIR/passwd.db"
LIBVIRT_SASL_USER=nova
LIBVIRT_SASL_PASSWORD_FILE="$LIBVIRT_SASL_DIR/$LIBVIRT_SASL_USER.password"
LIBVIRT_AUTH_FILE="$LIBVIRT_CONF_DIR/auth.conf"

libvirt_running() { virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

# Both network listeners answer (TCP: SASL with the stack's auth.conf, no
# prompt -- stdin is /dev/null; TLS: the client certificate is accepted).
libvirt_listening() {
    LIBVIRT_AUTH_FILE="$LIBVIRT_AUTH_FILE" virsh -c "$LIBVIRT_TCP_URI" version </dev/null >/dev/null 2>&1 &&
        virsh -c "$LIBVIRT_TLS_URI" version </dev/null >/dev/null 2>&1
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
# TCP authenticates with SASL as Kolla's default does (DIGEST-MD5 from the
# sasldb of $LIBVIRT_SASL_DIR, see _libvirt_sasl_conf). TLS authenticates by
# client certificate.
auth_tcp = "sasl"
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

# cyrus-sasl's config for the application "libvirt" (read from
# $SASL_CONF_PATH/libvirt.conf by libvirtd's SASL server).
_libvirt_sasl_conf() {
    cat <<EOF
# Written by deploy/dev/libvirt.sh; libvirtd reads it through SASL_CONF_PATH.
mech_list: digest-md5
sasldb_path: $LIBVIRT_SASL_DB
EOF
}

# libvirt's client auth.conf (https://libvirt.org/auth.html#client-configuration),
# as Kolla's auth.conf.j2 writes it: the remote driver looks up
# `[auth-libvirt-<host of the URI>]`, then `[auth-libvirt-default]`.
_libvirt_auth_conf() {
    cat <<EOF
[credentials-default]
authname=$LIBVIRT_SASL_USER
password=$(cat "$LIBVIRT_SASL_PASSWORD_FILE")

[auth-libvirt-default]
credentials=default
EOF
}

# Writes $1 with the content on stdin when it differs; returns 0 when it
# changed. Mode $2.
_write_if_changed() {
    local path="$1" mode="$2" content
    content="$(cat)"
    if [[ -f "$path" ]] && [[ "$(cat "$path")" == "$content" ]]; then
        return 1
    fi
    (umask 077 && printf '%s\n' "$content" >"$path.tmp")
    chmod "$mode" "$path.tmp"
    mv "$path.tmp" "$path"
}

# The SASL config, the sasldb user and the clients' auth.conf; idempotent.
# Returns 0 when libvirtd must be restarted to see a change.
_libvirt_sasl_up() {
    command -v saslpasswd2 >/dev/null || die "saslpasswd2 missing (Debian package sasl2-bin: apt_up)"
    mkdir -p "$LIBVIRT_SASL_DIR"
    chmod 0700 "$LIBVIRT_SASL_DIR"
    local changed=1
    _libvirt_sasl_conf | _write_if_changed "$LIBVIRT_SASL_DIR/libvirt.conf" 0600 && changed=0
    local new_password=0
    if [[ ! -s "$LIBVIRT_SASL_PASSWORD_FILE" ]]; then
        (umask 077 && openssl rand -hex 16 >"$LIBVIRT_SASL_PASSWORD_FILE")
        new_password=1
    fi
    if (( new_password )) || [[ ! -f "$LIBVIRT_SASL_DB" ]] ||
        ! sasldblistusers2 -f "$LIBVIRT_SASL_DB" 2>/dev/null | grep -q "^$LIBVIRT_SASL_USER@"; then
        say "creating SASL user $LIBVIRT_SASL_USER for libvirtd in $LIBVIRT_SASL_DB"
        tr -d '\n' <"$LIBVIRT_SASL_PASSWORD_FILE" |
            saslpasswd2 -p -c -a libvirt -f "$LIBVIRT_SASL_DB" "$LIBVIRT_SASL_USER" ||
            die "saslpasswd2 failed"
        chmod 0600 "$LIBVIRT_SASL_DB"
    fi
    _libvirt_auth_conf | _write_if_changed "$LIBVIRT_AUTH_FILE" 0600 || true
    return "$changed"
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
# before a new libvirtd can start). libvirtd itself forces its shutdown
# after 30 s when a worker is stuck ("Make forcefull daemon shutdown", seen
# here): wait longer than that.
_libvirtd_stop() {
    local pid
    pid="$(_libvirtd_pid)" || true
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 60))
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
    _libvirt_sasl_up && changed=1
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
        SASL_CONF_PATH="$LIBVIRT_SASL_DIR" \
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
            listeners="tcp 127.0.0.1:$LIBVIRT_TCP_PORT (sasl digest-md5, $LIBVIRT_AUTH_FILE), tls 127.0.0.1:$LIBVIRT_TLS_PORT (stack CA)"
        echo "libvirtd      up    $LIBVIRT_URI + $listeners (libvirt $(virsh -c "$LIBVIRT_URI" version 2>/dev/null | awk '/Using library/ {print $4}'), QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}'))"
    else
        echo "libvirtd      down"
    fi
}

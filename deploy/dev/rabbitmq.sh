# RabbitMQ (sourced by `stack`): Debian's rabbitmq-server, guest/guest on 5672,
# plus a TLS listener on 127.0.0.1:5671 presenting the stack CA's server
# certificate (deploy/dev/pki.sh; `pki_up` must have run). The TLS listener
# verifies a client certificate when one is offered (verify_peer) but does not
# require one (fail_if_no_peer_cert = false): one-way and mutual TLS both work,
# as with a Kolla deployment's `rabbitmq_enable_tls`.

RABBITMQ_TLS_PORT=5671
RABBITMQ_CONF="$STACK_DIR/rabbitmq/rabbitmq.conf"
# Shared by every test that uses the broker (crates/oslo-messaging/tests/common):
# tests hold it shared; a restart takes it exclusively so no test sees it.
RABBITMQ_LOCK=/tmp/openstack-rs-rabbitmq.lock

rabbitmq_running() { rabbitmqctl -q status >/dev/null 2>&1; }

rabbitmq_tls_listening() {
    rabbitmq-diagnostics -q listeners 2>/dev/null | grep -q "port: $RABBITMQ_TLS_PORT, protocol: amqp/ssl"
}

# The new-style (sysctl) config file; rewritten each time so a moved
# $STACK_DIR or regenerated PKI is picked up at the next start.
_rabbitmq_write_conf() {
    [[ -f "$PKI_DIR/server.pem" ]] || die "no stack CA in $PKI_DIR: pki_up must run before rabbitmq_up"
    mkdir -p "$(dirname "$RABBITMQ_CONF")"
    cat >"$RABBITMQ_CONF.tmp" <<EOF
# Written by deploy/dev/rabbitmq.sh; do not edit.
listeners.tcp.default = 5672
listeners.ssl.1 = 127.0.0.1:$RABBITMQ_TLS_PORT
ssl_options.cacertfile = $PKI_DIR/ca.pem
ssl_options.certfile = $PKI_DIR/server.pem
ssl_options.keyfile = $PKI_DIR/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
EOF
    chmod 0644 "$RABBITMQ_CONF.tmp"
    mv "$RABBITMQ_CONF.tmp" "$RABBITMQ_CONF"
}

_rabbitmq_start() {
    say "starting RabbitMQ (AMQP 5672, AMQPS 127.0.0.1:$RABBITMQ_TLS_PORT)"
    mkdir -p "$LOG_DIR/rabbitmq"
    chown rabbitmq: "$LOG_DIR/rabbitmq"
    # Debian's wrapper su's to the rabbitmq user keeping the environment.
    RABBITMQ_CONFIG_FILE="$RABBITMQ_CONF" RABBITMQ_LOG_BASE="$LOG_DIR/rabbitmq" \
        rabbitmq-server -detached >>"$LOG_DIR/rabbitmq-start.log" 2>&1
    # `await_startup` returns once the broker accepts connections.
    wait_for 120 rabbitmqctl -q await_startup || die "RabbitMQ did not start (see $LOG_DIR/rabbitmq)"
}

# A broker started before the TLS listener existed (or by hand without the
# config file) is restarted once, under the exclusive broker lock so no test
# is using it meanwhile. Users, vhosts and durable queues survive in mnesia.
_rabbitmq_restart_for_tls() {
    local fd
    exec {fd}>>"$RABBITMQ_LOCK"
    flock -x -w 900 "$fd" || die "could not lock $RABBITMQ_LOCK to restart RabbitMQ (a test holds it)"
    # Someone else may have restarted it while we waited.
    if ! rabbitmq_tls_listening; then
        say "RabbitMQ runs without the TLS listener: restarting it with $RABBITMQ_CONF"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
        wait_for 60 bash -c '! rabbitmqctl -q status' || die "RabbitMQ did not stop"
        _rabbitmq_start
    fi
    flock -u "$fd"
    exec {fd}>&-
}

rabbitmq_up() {
    _rabbitmq_write_conf
    if ! rabbitmq_running; then
        _rabbitmq_start
    fi
    wait_for 120 rabbitmqctl -q await_startup || die "RabbitMQ did not start (see $LOG_DIR/rabbitmq)"
    if ! rabbitmq_tls_listening; then
        _rabbitmq_restart_for_tls
        rabbitmq_tls_listening || die "RabbitMQ has no TLS listener on $RABBITMQ_TLS_PORT (see $LOG_DIR/rabbitmq)"
    fi
    # Record traffic on amq.rabbitmq.trace when debugging wire issues.
    rabbitmqctl -q trace_on >/dev/null 2>&1 || true
}

rabbitmq_down() {
    rabbitmq_running || return 0
    say "stopping RabbitMQ"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
}

rabbitmq_status() {
    if ! rabbitmq_running; then
        echo "rabbitmq      down"
        return 0
    fi
    local tls="no TLS listener (run stack up)"
    rabbitmq_tls_listening && tls="amqps://127.0.0.1:$RABBITMQ_TLS_PORT/ (stack CA)"
    echo "rabbitmq      up    amqp://guest:guest@127.0.0.1:5672/, $tls ($(rabbitmqctl -q version 2>/dev/null))"
}

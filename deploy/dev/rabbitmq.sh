# RabbitMQ (sourced by `stack`): Debian's rabbitmq-server, guest/guest on 5672.

rabbitmq_running() { rabbitmqctl -q status >/dev/null 2>&1; }

rabbitmq_up() {
    if ! rabbitmq_running; then
        say "starting RabbitMQ"
        mkdir -p "$LOG_DIR/rabbitmq"
        chown rabbitmq: "$LOG_DIR/rabbitmq"
        RABBITMQ_LOG_BASE="$LOG_DIR/rabbitmq" rabbitmq-server -detached >>"$LOG_DIR/rabbitmq-start.log" 2>&1
    fi
    # `await_startup` returns once the broker accepts connections.
    wait_for 120 rabbitmqctl -q await_startup || die "RabbitMQ did not start (see $LOG_DIR/rabbitmq)"
    # Record traffic on amq.rabbitmq.trace when debugging wire issues.
    rabbitmqctl -q trace_on >/dev/null 2>&1 || true
}

rabbitmq_down() {
    rabbitmq_running || return 0
    say "stopping RabbitMQ"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
}

rabbitmq_status() {
    if rabbitmq_running; then
        echo "rabbitmq      up    amqp://guest:guest@127.0.0.1:5672/ ($(rabbitmqctl -q version 2>/dev/null))"
    else
        echo "rabbitmq      down"
    fi
}

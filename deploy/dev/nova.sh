# nova-conductor (sourced by `stack`): nova's PyPI release in a venv, on sqlite
# cell databases, talking to the stack's RabbitMQ. Our nova-compute makes every
# database change through this conductor, as the Python one does.

NOVA_DIR="$STACK_DIR/nova"
NOVA_VENV="$STACK_DIR/venvs/nova"
NOVA_CONF="$NOVA_DIR/nova.conf"
TRANSPORT_URL="rabbit://guest:guest@127.0.0.1:5672/"
NOVA_PIP="nova==$NOVA_VERSION"

nova_config() {
    mkdir -p "$NOVA_DIR/state" "$NOVA_DIR/locks"
    cat >"$NOVA_CONF" <<CONF
[DEFAULT]
transport_url = $TRANSPORT_URL
state_path = $NOVA_DIR/state
host = stack-control
debug = False

[api_database]
connection = sqlite:///$NOVA_DIR/nova_api.sqlite

[database]
connection = sqlite:///$NOVA_DIR/nova.sqlite

[conductor]
# sqlite allows one writer: one worker keeps the conductor honest.
workers = 1

[placement]
auth_type = none
endpoint_override = http://127.0.0.1:8778

[glance]
api_servers = http://127.0.0.1:$GLANCE_PORT

[oslo_concurrency]
lock_path = $NOVA_DIR/locks

[oslo_messaging_notifications]
driver = messagingv2
CONF
}

# sqlite stands in for nova's MySQL here. In its default rollback-journal mode
# a reader (nova_peer polling the instance) makes the conductor's concurrent
# write fail at once with "database is locked"; write-ahead logging lets
# readers and the one writer proceed together, as they do on MySQL. The mode
# is stored in the database file, so setting it once is enough.
nova_sqlite_wal() {
    local db
    for db in nova_api nova nova_cell0; do
        "$NOVA_VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' \
            "$NOVA_DIR/$db.sqlite" >/dev/null 2>&1 \
            || say "warning: $db.sqlite stays in rollback-journal mode (busy); tests may see 'database is locked'"
    done
}

nova_manage() { "$NOVA_VENV/bin/nova-manage" --config-file "$NOVA_CONF" "$@"; }

nova_databases() {
    [[ -f "$NOVA_DIR/databases.done" ]] && return 0
    say "creating nova's databases (api, cell0, cell1)"
    logged nova-manage.log nova_manage api_db sync
    logged nova-manage.log nova_manage cell_v2 map_cell0 \
        --database_connection "sqlite:///$NOVA_DIR/nova_cell0.sqlite"
    logged nova-manage.log nova_manage db sync
    if ! nova_manage cell_v2 list_cells 2>/dev/null | grep -q ' cell1 '; then
        logged nova-manage.log nova_manage cell_v2 create_cell --name cell1
    fi
    touch "$NOVA_DIR/databases.done"
}

# The conductor is ready when it consumes from its topic queue.
nova_conductor_running() {
    pid_alive nova-conductor &&
        rabbitmqctl -q list_queues name consumers 2>/dev/null | awk '$1 == "conductor" && $2 > 0 {ok=1} END {exit !ok}'
}

nova_up() {
    venv_up nova "$NOVA_PIP"
    nova_config
    nova_databases
    nova_sqlite_wal
    nova_conductor_running && return 0
    pid_alive nova-conductor && kill "$(cat "$RUN_DIR/nova-conductor.pid")" && sleep 1
    say "starting nova-conductor"
    setsid "$NOVA_VENV/bin/nova-conductor" --config-file "$NOVA_CONF" \
        --log-file "$LOG_DIR/nova-conductor.log" </dev/null >>"$LOG_DIR/nova-conductor.out" 2>&1 &
    echo $! >"$RUN_DIR/nova-conductor.pid"
    wait_for 120 nova_conductor_running || { tail -n 30 "$LOG_DIR/nova-conductor.log" >&2; die "nova-conductor did not start"; }
}

nova_down() {
    pid_alive nova-conductor || return 0
    say "stopping nova-conductor"
    kill "$(cat "$RUN_DIR/nova-conductor.pid")"
    wait_for 30 bash -c "! kill -0 $(cat "$RUN_DIR/nova-conductor.pid")" || true
}

nova_status() {
    if nova_conductor_running; then
        echo "nova          up    nova-conductor $NOVA_VERSION (pid $(cat "$RUN_DIR/nova-conductor.pid"), $NOVA_CONF)"
    else
        echo "nova          down  (nova-conductor)"
    fi
}

# nova's own API and object code as a command-line peer (see nova_peer.py):
#   nova_peer create-instance --host H --uuid U ...; nova_peer snapshot --uuid U --name N
nova_peer() {
    "$NOVA_VENV/bin/python" "$REPO_DIR/deploy/dev/nova_peer.py" --config-file "$NOVA_CONF" "$@" \
        2>>"$LOG_DIR/nova-peer.log"
}

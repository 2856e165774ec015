# nova-conductor (sourced by `stack`): nova's PyPI release in a venv, on the
# stack's MariaDB (api, cell0 and cell1 databases, as Kolla lays them out), talking to the stack's RabbitMQ. Our nova-compute makes every
# database change through this conductor, as the Python one does.

NOVA_DIR="$STACK_DIR/nova"
NOVA_VENV="$STACK_DIR/venvs/nova"
NOVA_CONF="$NOVA_DIR/nova.conf"
TRANSPORT_URL="rabbit://guest:guest@127.0.0.1:5672/"
NOVA_PIP="nova==$NOVA_VERSION PyMySQL"

nova_config() {
    mkdir -p "$NOVA_DIR/state" "$NOVA_DIR/locks"
    cat >"$NOVA_CONF" <<CONF
[DEFAULT]
transport_url = $TRANSPORT_URL
state_path = $NOVA_DIR/state
host = stack-control
debug = False

[api_database]
connection = $(stack_db_url nova nova_api)

[database]
connection = $(stack_db_url nova nova)

[conductor]
# Kolla's default (one per core, here 2): our service must not depend on
# which conductor process answers.
workers = 2

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

nova_manage() { "$NOVA_VENV/bin/nova-manage" --config-file "$NOVA_CONF" "$@"; }

# The cell mappings in nova_api hold the cells' database URLs: the stamp
# records the URL they were made with, and a different one (another database
# server or port) starts nova's databases afresh rather than leave mappings
# pointing at a server that is gone.
nova_databases() {
    local stamp="$NOVA_DIR/databases.done" url; url=$(stack_db_url nova nova)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$url" ]] &&
        [[ -n "$(stack_sql nova_api -e "SHOW TABLES LIKE 'cell_mappings'")" ]]; then
        return 0
    fi
    say "creating nova's databases (api, cell0, cell1)"
    local db
    for db in nova_api nova nova_cell0; do
        stack_sql -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
    done
    logged nova-manage.log nova_manage api_db sync
    logged nova-manage.log nova_manage cell_v2 map_cell0 \
        --database_connection "$(stack_db_url nova nova_cell0)"
    logged nova-manage.log nova_manage db sync
    logged nova-manage.log nova_manage cell_v2 create_cell --name cell1
    printf '%s' "$url" >"$stamp"
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
    local out rc=0
    out=$("$NOVA_VENV/bin/python" "$REPO_DIR/deploy/dev/nova_peer.py" --config-file "$NOVA_CONF" "$@" \
        2>>"$LOG_DIR/nova-peer.log") || rc=$?
    if (( rc != 0 )); then
        # nova's refusal is the JSON on stdout; the traceback is in the log.
        printf '[stack] nova_peer %s failed (exit %d): %s (log: %s)\n' "$1" "$rc" "$out" "$LOG_DIR/nova-peer.log" >&2
        return "$rc"
    fi
    printf '%s\n' "$out"
}

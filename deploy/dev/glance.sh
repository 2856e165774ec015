# Glance (sourced by `stack`): the PyPI release in a venv, served by uWSGI the
# way Kolla serves it, on a sqlite database with the file store. No Keystone
# (`[paste_deploy] flavor =`): issue-specific tests bring their own Keystone.

GLANCE_DIR="$STACK_DIR/glance"
GLANCE_VENV="$STACK_DIR/venvs/glance"
GLANCE_URL="http://127.0.0.1:$GLANCE_PORT"
GLANCE_PIP="glance==$GLANCE_VERSION uwsgi"

glance_config() {
    mkdir -p "$GLANCE_DIR/etc" "$GLANCE_DIR/images" "$GLANCE_DIR/staging" "$GLANCE_DIR/tasks"
    cat >"$GLANCE_DIR/etc/glance-api.conf" <<CONF
[DEFAULT]
enabled_backends = local:file
bind_host = 127.0.0.1
bind_port = $GLANCE_PORT
# Kolla's default; the snapshot tests upload images far below it.
image_size_cap = 1099511627776

[database]
connection = sqlite:///$GLANCE_DIR/glance.sqlite

[glance_store]
default_backend = local

[local]
filesystem_store_datadir = $GLANCE_DIR/images

[os_glance_staging_store]
filesystem_store_datadir = $GLANCE_DIR/staging

[os_glance_tasks_store]
filesystem_store_datadir = $GLANCE_DIR/tasks

[paste_deploy]
flavor =

[oslo_policy]
enforce_new_defaults = False
enforce_scope = False
CONF
    cp "$GLANCE_VENV/etc/glance/glance-api-paste.ini" "$GLANCE_DIR/etc/"
}

glance_running() { curl -fs -o /dev/null "$GLANCE_URL/versions"; }

glance_up() {
    venv_up glance "$GLANCE_PIP"
    glance_config
    if [[ ! -f "$GLANCE_DIR/glance.sqlite.done" ]]; then
        say "creating the Glance database"
        logged glance-manage.log "$GLANCE_VENV/bin/glance-manage" \
            --config-file "$GLANCE_DIR/etc/glance-api.conf" db_sync
        touch "$GLANCE_DIR/glance.sqlite.done"
    fi
    glance_running && return 0
    say "starting Glance API (uWSGI) on $GLANCE_URL"
    local site; site=$("$GLANCE_VENV/bin/python" -c 'import glance, os; print(os.path.dirname(glance.__file__))')
    # The chunk limit is Kolla's (nova's 1 MiB-chunked uploads fail without
    # it); `Connection: close` spares pooled clients connection resets.
    OS_GLANCE_CONFIG_DIR="$GLANCE_DIR/etc" "$GLANCE_VENV/bin/uwsgi" \
        --http-socket "127.0.0.1:$GLANCE_PORT" --wsgi-file "$site/wsgi/api.py" \
        --master --processes 1 --threads 4 --die-on-term \
        --http-chunked-input --chunked-input-limit 67108864 --http-raw-body \
        --add-header 'Connection: close' \
        --pidfile "$RUN_DIR/glance-api.pid" --daemonize "$LOG_DIR/glance-api.log"
    wait_for 90 glance_running || { tail -n 30 "$LOG_DIR/glance-api.log" >&2; die "Glance did not start"; }
}

glance_down() {
    pid_alive glance-api || return 0
    say "stopping Glance"
    kill -INT "$(cat "$RUN_DIR/glance-api.pid")"
    wait_for 30 bash -c "! kill -0 $(cat "$RUN_DIR/glance-api.pid")" || true
}

glance_status() {
    if glance_running; then
        echo "glance        up    $GLANCE_URL (glance $GLANCE_VERSION, uWSGI, file store $GLANCE_DIR/images)"
    else
        echo "glance        down"
    fi
}

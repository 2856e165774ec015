# Glance (sourced by `stack`): the PyPI release in a venv, served by uWSGI the
# way Kolla serves it, on the stack's MariaDB with the file store. No Keystone
# (`[paste_deploy] flavor =`): issue-specific tests bring their own Keystone.

GLANCE_DIR="$STACK_DIR/glance"
GLANCE_VENV="$STACK_DIR/venvs/glance"
GLANCE_URL="http://127.0.0.1:$GLANCE_PORT"
GLANCE_PIP="glance==$GLANCE_VERSION uwsgi PyMySQL"

# Every instance is the same uWSGI service with its own config, database and
# store; they differ in port, paste flavor (no auth or keystone) and size cap.
# The shared one is "api" (port 9292, no auth); keystone.sh adds the others.
glance_instance_dir() { [[ "$1" == api ]] && echo "$GLANCE_DIR" || echo "$STACK_DIR/glance-$1"; }
# Its database on the stack's MariaDB (mariadb.sh creates them all).
glance_instance_db() { [[ "$1" == api ]] && echo glance || echo "glance_$1"; }

glance_instance_running() { curl -fs -o /dev/null "http://127.0.0.1:$1/versions"; }

glance_instance_config() {  # name, port, flavor, size cap
    local dir; dir=$(glance_instance_dir "$1")
    mkdir -p "$dir/etc" "$dir/images" "$dir/staging" "$dir/tasks"
    cat >"$dir/etc/glance-api.conf" <<CONF
[DEFAULT]
enabled_backends = local:file
bind_host = 127.0.0.1
bind_port = $2
image_size_cap = $4

[database]
connection = $(stack_db_url glance "$(glance_instance_db "$1")")

[glance_store]
default_backend = local

[local]
filesystem_store_datadir = $dir/images

[os_glance_staging_store]
filesystem_store_datadir = $dir/staging

[os_glance_tasks_store]
filesystem_store_datadir = $dir/tasks

[paste_deploy]
flavor = $3

[oslo_policy]
enforce_new_defaults = False
enforce_scope = False
CONF
    if [[ "$3" == keystone ]]; then
        cat >>"$dir/etc/glance-api.conf" <<CONF

[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = glance
password = $KEYSTONE_SERVICE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
service_type = image
# nova's X-Service-Token is honoured only with the service role (Kolla's setting).
service_token_roles = service
service_token_roles_required = true
CONF
    fi
    cp "$GLANCE_VENV/etc/glance/glance-api-paste.ini" "$dir/etc/"
}

glance_instance_up() {  # name, port, flavor, size cap
    local name="$1" port="$2" dir; dir=$(glance_instance_dir "$1")
    venv_up glance "$GLANCE_PIP"
    glance_instance_config "$@"
    # Synced once: its database has Glance's tables.
    if [[ -z "$(stack_sql "$(glance_instance_db "$name")" -e "SHOW TABLES LIKE 'images'")" ]]; then
        say "creating the database of glance-$name"
        logged "glance-$name-manage.log" "$GLANCE_VENV/bin/glance-manage" \
            --config-file "$dir/etc/glance-api.conf" db_sync
    fi
    glance_instance_running "$port" && return 0
    say "starting glance-$name (uWSGI) on http://127.0.0.1:$port"
    local site; site=$("$GLANCE_VENV/bin/python" -c 'import glance, os; print(os.path.dirname(glance.__file__))')
    # The chunk limit is Kolla's (nova's 1 MiB-chunked uploads fail without
    # it); `Connection: close` spares pooled clients connection resets.
    OS_GLANCE_CONFIG_DIR="$dir/etc" "$GLANCE_VENV/bin/uwsgi" \
        --http-socket "127.0.0.1:$port" --wsgi-file "$site/wsgi/api.py" \
        --master --processes 1 --threads 4 --die-on-term \
        --http-chunked-input --chunked-input-limit 67108864 --http-raw-body \
        --add-header 'Connection: close' \
        --pidfile "$RUN_DIR/glance-$name.pid" --daemonize "$LOG_DIR/glance-$name.log"
    wait_for 90 glance_instance_running "$port" \
        || { tail -n 30 "$LOG_DIR/glance-$name.log" >&2; die "glance-$name did not start"; }
}

# Stops an instance the way `docker stop` stops Kolla's glance_api: SIGTERM to the uWSGI
# master (`--die-on-term`), in-flight requests are cut off.
glance_instance_down() {  # name
    pid_alive "glance-$1" || return 0
    say "stopping glance-$1"
    local pid; pid="$(cat "$RUN_DIR/glance-$1.pid")"
    kill -TERM "$pid"
    wait_for 30 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
}

glance_up() { glance_instance_up api "$GLANCE_PORT" "" 1099511627776; }
glance_down() { glance_instance_down api; }
glance_running() { glance_instance_running "$GLANCE_PORT"; }

glance_status() {
    if glance_running; then
        echo "glance        up    $GLANCE_URL (glance $GLANCE_VERSION, uWSGI, file store $GLANCE_DIR/images)"
    else
        echo "glance        down"
    fi
}

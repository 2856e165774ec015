# MariaDB (sourced by `stack`): the databases of nova and Glance, on MariaDB
# 10.11 as Kolla's mariadb container serves them (utf8, InnoDB), so that
# concurrent writers wait on row locks instead of failing the way a sqlite file
# does ("database is locked") whenever two services write at once.
#
# The server is the stack's own: data, socket, pid and log under
# $STACK_DIR/mariadb, listening on 127.0.0.1:13306 (not 3306: a machine's own
# MySQL or MariaDB may hold that), running as the `mysql` user
# (the path to $STACK_DIR must be traversable, as it already is for
# libvirt-qemu). root reaches it over the socket (unix_socket auth); nova and
# Glance connect over TCP with their own users, as in a deployment.

MARIADB_DIR="$STACK_DIR/mariadb"
MARIADB_CNF="$MARIADB_DIR/my.cnf"
MARIADB_SOCKET="$MARIADB_DIR/run/mysqld.sock"
MARIADB_PORT=13306
# Test-stack credentials, the same for every database user here.
STACK_DB_PASSWORD=stack-db-secret

# A SQLAlchemy URL for one of the stack's databases, in Kolla's form.
stack_db_url() {  # user, database
    echo "mysql+pymysql://$1:$STACK_DB_PASSWORD@127.0.0.1:$MARIADB_PORT/$2?charset=utf8"
}

# The server's own client as root over the socket, on `database` if given.
stack_sql() {  # [database] -e statement...
    mariadb --socket="$MARIADB_SOCKET" --batch --skip-column-names "$@"
}

mariadb_config() {
    mkdir -p "$MARIADB_DIR/data" "$MARIADB_DIR/run"
    cat >"$MARIADB_CNF" <<CNF
[mysqld]
user = mysql
datadir = $MARIADB_DIR/data
socket = $MARIADB_SOCKET
pid-file = $MARIADB_DIR/run/mariadb.pid
log-error = $MARIADB_DIR/mariadb.log
bind-address = 127.0.0.1
port = $MARIADB_PORT
skip-name-resolve
# Kolla's character set (nova's tables declare utf8 themselves).
character-set-server = utf8
collation-server = utf8_general_ci
max_connections = 1000
# A test stack: a crash may lose the last second of commits, fsync per commit
# is not worth the time here.
innodb_flush_log_at_trx_commit = 2
innodb_buffer_pool_size = 256M
CNF
    chown -R mysql:mysql "$MARIADB_DIR"
}

mariadb_running() {
    mariadb-admin --socket="$MARIADB_SOCKET" --connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_initialized() { [[ -f "$MARIADB_DIR/data/stack-initialized" ]]; }

mariadb_up() {
    local before=""
    [[ -f "$MARIADB_CNF" ]] && before=$(cat "$MARIADB_CNF")
    mariadb_config
    if mariadb_running; then
        [[ "$(cat "$MARIADB_CNF")" == "$before" ]] && { mariadb_databases; return 0; }
        say "MariaDB's configuration changed: restarting it"
        mariadb_down
    fi
    if ! mariadb_initialized; then
        say "initializing MariaDB in $MARIADB_DIR/data"
        rm -rf "$MARIADB_DIR/data" && mkdir -p "$MARIADB_DIR/data" && chown mysql:mysql "$MARIADB_DIR/data"
        logged mariadb-install.log mariadb-install-db --defaults-file="$MARIADB_CNF" \
            --auth-root-authentication-method=socket --skip-test-db
        touch "$MARIADB_DIR/data/stack-initialized"
    fi
    say "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    setsid mariadbd --defaults-file="$MARIADB_CNF" </dev/null >>"$LOG_DIR/mariadb.out" 2>&1 &
    echo $! >"$RUN_DIR/mariadb.pid"
    wait_for 60 mariadb_running \
        || { tail -n 30 "$MARIADB_DIR/mariadb.log" >&2; die "MariaDB did not start (is port $MARIADB_PORT taken?)"; }
    mariadb_databases
}

# nova's three databases and one per Glance instance, with their users; every
# statement is a no-op when already done.
mariadb_databases() {
    local db
    for db in nova_api nova nova_cell0; do
        stack_sql -e "CREATE DATABASE IF NOT EXISTS $db"
    done
    for db in glance glance_auth glance_capped glance_spare; do
        stack_sql -e "CREATE DATABASE IF NOT EXISTS $db"
    done
    stack_sql -e "CREATE USER IF NOT EXISTS 'nova'@'%' IDENTIFIED BY '$STACK_DB_PASSWORD';
                  GRANT ALL PRIVILEGES ON nova.* TO 'nova'@'%';
                  GRANT ALL PRIVILEGES ON nova_api.* TO 'nova'@'%';
                  GRANT ALL PRIVILEGES ON nova_cell0.* TO 'nova'@'%';
                  CREATE USER IF NOT EXISTS 'glance'@'%' IDENTIFIED BY '$STACK_DB_PASSWORD';
                  GRANT ALL PRIVILEGES ON \`glance%\`.* TO 'glance'@'%';"
}

mariadb_down() {
    pid_alive mariadb || return 0
    say "stopping MariaDB"
    local pid; pid="$(cat "$RUN_DIR/mariadb.pid")"
    kill -TERM "$pid"
    wait_for 60 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
}

mariadb_status() {
    if mariadb_running; then
        echo "mariadb       up    127.0.0.1:$MARIADB_PORT ($(mariadbd --version | awk '{print $3}'), $MARIADB_DIR/data)"
    else
        echo "mariadb       down"
    fi
}

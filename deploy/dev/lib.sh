# Shared shell functions for the local real stack (sourced, not executed).
#
# Everything the stack creates lives under $STACK_DIR (default: <repo>/.stack,
# gitignored): venvs, configs, the MariaDB data, the guest fixture, pid files
# and logs. Each step checks whether its work is already done and skips it, so
# `stack up` is safe to run any number of times.

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO_DIR/.stack}"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"
mkdir -p "$LOG_DIR" "$RUN_DIR"
# libvirt's qemu runs as libvirt-qemu: every directory on the way to the guest
# disks must be traversable.
chmod o+x "$STACK_DIR"

GLANCE_VERSION=33.0.0
NOVA_VERSION=34.0.0
GLANCE_PORT=9292
PYTHON="${PYTHON:-python3}"

say()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a command with its output appended to a log file; on failure show the tail.
logged() {
    local log="$LOG_DIR/$1"; shift
    if ! "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "'$*' failed (log: $log)"
    fi
}

pid_alive() {
    local pidfile="$RUN_DIR/$1.pid"
    [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# Wait until a command succeeds, at most $1 seconds.
wait_for() {
    local timeout="$1"; shift
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || return 1
        sleep 0.5
    done
}

# Our nova-compute on the local stack (sourced by `stack` and the demo).
#
# Writes the nova.conf it runs with (deploy/dev/compute-conf, the one writer
# of our service's nova.conf) and builds the binary.

COMPUTE_DIR="$STACK_DIR/compute"
COMPUTE_CONF="$COMPUTE_DIR/nova.conf"
COMPUTE_HOST="${COMPUTE_HOST:-stack-compute}"

compute_config() {
    mkdir -p "$COMPUTE_DIR/state/instances/snapshots"
    chmod o+x "$COMPUTE_DIR" "$COMPUTE_DIR/state" "$COMPUTE_DIR/state/instances"
    "$REPO_DIR/deploy/dev/compute-conf" --host "$COMPUTE_HOST" --state-path "$COMPUTE_DIR/state" \
        --log-dir "$LOG_DIR" --glance "http://127.0.0.1:$GLANCE_PORT" >"$COMPUTE_CONF"
}

compute_build() {
    say "building nova-compute"
    (cd "$REPO_DIR" && logged cargo-build.log cargo build --locked --bin nova-compute)
    COMPUTE_BIN="$REPO_DIR/target/debug/nova-compute"
}

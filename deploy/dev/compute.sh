# Our nova-compute on the local stack (sourced by `stack` and the demo).
#
# Writes the nova.conf it runs with — the same options a Kolla nova_compute
# container gets, pointed at this machine's RabbitMQ, libvirtd and Glance —
# and builds the binary.

COMPUTE_DIR="$STACK_DIR/compute"
COMPUTE_CONF="$COMPUTE_DIR/nova.conf"
COMPUTE_HOST="${COMPUTE_HOST:-stack-compute}"

compute_config() {
    mkdir -p "$COMPUTE_DIR/state/instances/snapshots"
    chmod o+x "$COMPUTE_DIR" "$COMPUTE_DIR/state" "$COMPUTE_DIR/state/instances"
    cat >"$COMPUTE_CONF" <<CONF
[DEFAULT]
host = $COMPUTE_HOST
state_path = $COMPUTE_DIR/state
log_dir = $LOG_DIR
transport_url = rabbit://guest:guest@127.0.0.1:5672/
debug = True

[libvirt]
virt_type = qemu
connection_uri = qemu:///system

[glance]
api_servers = http://127.0.0.1:$GLANCE_PORT

[oslo_messaging_notifications]
driver = messagingv2

[notifications]
notification_format = both
CONF
}

compute_build() {
    say "building nova-compute"
    (cd "$REPO_DIR" && logged cargo-build.log cargo build --locked --bin nova-compute)
    COMPUTE_BIN="$REPO_DIR/target/debug/nova-compute"
}

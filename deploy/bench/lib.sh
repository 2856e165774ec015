# Shared functions of the snapshot benchmark (sourced after deploy/dev/lib.sh,
# venv.sh, guest.sh and nova.sh). Everything lives under $BENCH_DIR
# (<repo>/.stack/bench); nothing of the shared stack is changed.
#
#   $BENCH_DIR/base/base.raw        ext4 data disk of the bench guests (1 GiB,
#                                   256 MiB of random data as the "OS image" part)
#   $BENCH_DIR/base/template.qcow2  overlay on base.raw into which a guest wrote
#                                   512 MiB of random data (the instance's own
#                                   writes); copied for every bench guest, so
#                                   both services snapshot byte-identical disks
#   $BENCH_DIR/py/                  the Python nova-compute (host bench-py):
#                                   nova.conf, state/, instances/<uuid>/disk
#   $BENCH_DIR/rs/                  our nova-compute (host bench-rs), same layout
#   $BENCH_DIR/results-*.json       raw results of each run

BENCH_DIR="$STACK_DIR/bench"
BENCH_PY_VENV="$STACK_DIR/venvs/nova-py-compute"
BENCH_PY_PIP="nova==$NOVA_VERSION libvirt-python"
BENCH_TARGET_DIR="${BENCH_TARGET_DIR:-/work/target-bench}"
BENCH_BASE_SIZE_MIB="${BENCH_BASE_SIZE_MIB:-1024}"
BENCH_BASE_DATA_MIB="${BENCH_BASE_DATA_MIB:-256}"
BENCH_FILL_MIB="${BENCH_FILL_MIB:-512}"
BENCH_URI=qemu:///system

_bench_virsh() { virsh -q -c "$BENCH_URI" "$@"; }

bench_dirs() {
    mkdir -p "$BENCH_DIR"/{base,py,rs}
    chmod o+x "$BENCH_DIR" "$BENCH_DIR/base" "$BENCH_DIR/py" "$BENCH_DIR/rs"
}

# --- the Python nova-compute ---------------------------------------------------

bench_py_venv() {
    # nova's libvirt driver needs libvirt-python (built against libvirt-dev);
    # everything else comes with nova itself.
    venv_up nova-py-compute "$BENCH_PY_PIP"
}

# The Python service's base nova.conf (ours comes from deploy/dev/compute-conf).
# $1 = side (py), $2 = host.
_bench_py_base_conf() {
    local side="$1" host="$2" d="$BENCH_DIR/$1"
    cat <<CONF
[DEFAULT]
host = $host
state_path = $d/state
instances_path = $d/state/instances
transport_url = rabbit://guest:guest@127.0.0.1:5672/
debug = False

[libvirt]
virt_type = qemu
connection_uri = $BENCH_URI
snapshots_directory = $d/state/instances/snapshots

[glance]
api_servers = http://127.0.0.1:$GLANCE_PORT

[oslo_messaging_notifications]
driver = noop

[oslo_concurrency]
lock_path = $d/state/locks
CONF
}

# $1 = variant: live | cold
bench_py_config() {
    local variant="$1" d="$BENCH_DIR/py" helper
    mkdir -p "$d/state/instances/snapshots" "$d/state/locks" "$d/logs"
    chmod o+x "$d/state" "$d/state/instances"
    helper="$BENCH_PY_VENV/bin/privsep-helper --config-file $d/nova.conf"
    {
        _bench_py_base_conf py bench-py
        cat <<CONF

[DEFAULT]
compute_driver = libvirt.LibvirtDriver
my_ip = 127.0.0.1
log_file = $d/logs/nova-compute.log
# No placement service on this stack: the resource tracker's periodic update
# only logs placement errors; run it at start-up only.
update_resources_interval = -1
# Periodic tasks that would reach services this stack does not run (neutron)
# or act on other engineers' guests on the shared libvirtd: off.
heal_instance_info_cache_interval = -1
sync_power_state_interval = -1
running_deleted_instance_action = noop
running_deleted_instance_poll_interval = 0
instance_usage_audit = False
graceful_shutdown_timeout = 5
resume_guests_state_on_host_boot = False

[image_cache]
manager_interval = -1

[placement]
auth_type = none
endpoint_override = http://127.0.0.1:${PLACEMENT_STUB_PORT:-8779}

[vnc]
enabled = False

[spice]
enabled = False

[workarounds]
disable_libvirt_livesnapshot = $([[ "$variant" == cold ]] && echo True || echo False)

# Running as root here: start privsep daemons directly, no sudo/rootwrap.
[nova_sys_admin]
helper_command = $helper

[privsep_osbrick]
helper_command = $helper

[vif_plug_linux_bridge_privileged]
helper_command = $helper

[vif_plug_ovs_privileged]
helper_command = $helper
CONF
    } >"$d/nova.conf"
}

bench_rs_config() {
    local variant="$1" strategy="${2:-backup}" d="$BENCH_DIR/rs"
    mkdir -p "$d/state/instances/snapshots" "$d/state/locks" "$d/logs"
    chmod o+x "$d/state" "$d/state/instances"
    "$REPO_DIR/deploy/dev/compute-conf" --host bench-rs --state-path "$d/state" --log-dir "$d/logs" \
        --instances-path "$d/state/instances" --snapshots-directory "$d/state/instances/snapshots" \
        --connection-uri "$BENCH_URI" --glance "http://127.0.0.1:$GLANCE_PORT" --debug False \
        --notifications noop --extra >"$d/nova.conf" <<CONF
[snapshot_engine]
live_strategy = $strategy

[workarounds]
disable_libvirt_livesnapshot = $([[ "$variant" == cold ]] && echo True || echo False)
CONF
}

bench_rs_build() {
    say "building our nova-compute (release, CARGO_TARGET_DIR=$BENCH_TARGET_DIR)"
    (cd "$REPO_DIR" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" \
        logged bench-cargo.log cargo build --release --locked --bin nova-compute)
    BENCH_RS_BIN="$BENCH_TARGET_DIR/release/nova-compute"
}

# --- disks and guests ------------------------------------------------------------

# The bench guests' data disk: like the fixture's base.raw (mkfs.ext4 -d, no
# lazy init, read-only), but large enough for the fill, with an "OS image"
# part of random data in the backing file.
bench_base() {
    local b="$BENCH_DIR/base" c
    [[ -s "$b/base.raw" ]] && return 0
    say "bench: making base.raw (${BENCH_BASE_SIZE_MIB} MiB ext4, ${BENCH_BASE_DATA_MIB} MiB of data)"
    c="$b/content"
    rm -rf "$c" "$b/base.raw.tmp"
    mkdir -p "$c/fixture"
    echo "hello from the bench base image" >"$c/fixture/hello.txt"
    head -c "$((BENCH_BASE_DATA_MIB * 1024 * 1024))" /dev/urandom >"$c/os-image.bin"
    logged bench.log mkfs.ext4 -q -F -L bench-data -b 4096 \
        -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 \
        -d "$c" "$b/base.raw.tmp" "${BENCH_BASE_SIZE_MIB}M"
    chmod 0444 "$b/base.raw.tmp"
    mv "$b/base.raw.tmp" "$b/base.raw"
    rm -rf "$c"
}

# Domain XML from the fixture's template, with the disk where nova's libvirt
# driver keeps it: <instances_path>/<uuid>/disk (qcow2 over a backing file).
# $1 name, $2 uuid, $3 instance dir
_bench_domain_xml() {
    local name="$1" uuid="$2" dir="$3" g="$GUEST_BUILD_DIR"
    sed -e "s|@NAME@|$(_guest_subst_value "$name")|" \
        -e "s|@UUID@|$uuid|" \
        -e "s|@GUEST_DIR@|$(_guest_subst_value "$dir")|" \
        -e "s|@MEMORY_MIB@|$GUEST_MEMORY_MIB|" \
        -e "s|@KERNEL@|$(_guest_subst_value "$g/vmlinuz")|" \
        -e "s|@INITRD@|$(_guest_subst_value "$g/initramfs.img")|" \
        -e "s|@CMDLINE@|$(_guest_subst_value "$GUEST_CMDLINE")|" \
        -e "s|@DISK@|$(_guest_subst_value "$dir/disk")|" \
        -e "s|@CONSOLE_LOG@|$(_guest_subst_value "$dir/console.log")|" \
        -e '/@AGENT_BEGIN@/d' -e '/@AGENT_END@/d' \
        "$GUEST_ASSETS/domain.xml.in" >"$dir/domain.xml"
}

bench_guest_remove() {  # name
    local name="$1" xml dir
    if _bench_virsh domstate "$name" >/dev/null 2>&1; then
        xml=$(_bench_virsh dumpxml --inactive "$name" 2>/dev/null || true)
        _bench_virsh destroy "$name" >/dev/null 2>&1 || true
        _bench_virsh undefine "$name" --snapshots-metadata --checkpoints-metadata \
            --managed-save >/dev/null 2>&1 || true
        dir=$(sed -n "s|.*<stack:dir>\(.*\)</stack:dir>.*|\1|p" <<<"$xml")
        # Only ever delete our own directories.
        [[ -n "$dir" && "$dir" == "$BENCH_DIR"/* ]] && rm -rf "$dir"
    fi
    return 0
}

# $1 name, $2 instance dir parent (<instances_path>), $3 disk source file to copy
# Prints the uuid.
bench_guest_create() {
    local name="$1" parent="$2" src="$3" uuid dir
    [[ "$name" == bench-* ]] || die "bench guests are named bench-*: $name"
    bench_guest_remove "$name"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    dir="$parent/$uuid"
    mkdir -p "$dir"
    chmod 0755 "$parent" "$dir"
    if [[ -n "$src" ]]; then
        cp --sparse=always "$src" "$dir/disk"
    else
        logged bench.log qemu-img create -q -f qcow2 -b "$BENCH_DIR/base/base.raw" -F raw "$dir/disk"
    fi
    _bench_domain_xml "$name" "$uuid" "$dir"
    logged bench.log _bench_virsh define "$dir/domain.xml"
    echo "$uuid"
}

bench_guest_start() {  # name
    local name="$1"
    logged bench.log _bench_virsh start "$name"
    wait_for "$GUEST_BOOT_TIMEOUT" _guest_ping "$name" \
        || die "bench guest $name: agent did not answer within ${GUEST_BOOT_TIMEOUT}s"
}

# The filled overlay, made once: a guest writes BENCH_FILL_MIB of random data
# into a file on its ext4 and syncs; the domain is then shut off and removed
# and only the overlay is kept.
bench_template() {
    local b="$BENCH_DIR/base" t="$BENCH_DIR/base/tpl" uuid
    [[ -s "$b/template.qcow2" && "$(cat "$b/template.stamp" 2>/dev/null)" == "$BENCH_FILL_MIB" ]] && return 0
    say "bench: filling a template overlay with ${BENCH_FILL_MIB} MiB of random data (guest writes)"
    rm -rf "$t"; mkdir -p "$t"
    uuid=$(bench_guest_create bench-template "$t" "")
    bench_guest_start bench-template
    GUEST_EXEC_TIMEOUT=900 guest_exec bench-template \
        "dd if=/dev/urandom of=/data/fill.bin bs=1M count=$BENCH_FILL_MIB 2>/dev/null && sync && ls -l /data" >&2 \
        || die "the fill failed in bench-template"
    _bench_virsh shutdown bench-template >/dev/null 2>&1 || true
    wait_for 60 bash -c "[[ \$(virsh -q -c $BENCH_URI domstate bench-template) == 'shut off' ]]" \
        || _bench_virsh destroy bench-template >/dev/null 2>&1 || true
    cp --sparse=always "$t/$uuid/disk" "$b/template.qcow2.tmp"
    bench_guest_remove bench-template
    rm -rf "$t"
    mv "$b/template.qcow2.tmp" "$b/template.qcow2"
    echo "$BENCH_FILL_MIB" >"$b/template.stamp"
}

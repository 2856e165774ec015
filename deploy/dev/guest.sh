# The guest fixture (sourced by `stack` after lib.sh): a real libvirt/QEMU
# guest that boots in seconds and runs qemu-guest-agent, so the snapshot path
# can be tested end to end (quiesce, live block jobs, persistent definitions)
# without a cloud image or network. See docs/guest-fixture.md.
#
#   $STACK_DIR/guest/            built once, shared by every guest (read-only to them)
#     debs/                      the kernel .deb (apt-get download)
#     kernel/                    the .deb unpacked (dpkg -x), for its modules
#     vmlinuz, initramfs.img     direct kernel boot
#     initramfs.stamp            hash of everything that went into initramfs.img
#     base.raw                   ext4 data disk, the backing file of every overlay
#   $STACK_DIR/guests/NAME/      one per guest
#     disk.qcow2                 qcow2 overlay on base.raw (the guest's vda)
#     uuid, domain.xml           what was given to `virsh define`
#     console.log                serial console (kernel + init messages)

GUEST_NAME="${GUEST_NAME:-stack-guest}"
GUEST_URI="${LIBVIRT_URI:-qemu:///system}"
GUEST_ASSETS="$REPO_DIR/deploy/dev/guest"
GUEST_BUILD_DIR="$STACK_DIR/guest"
GUEST_ROOT="$STACK_DIR/guests"
GUEST_MEMORY_MIB="${GUEST_MEMORY_MIB:-256}"
GUEST_DATA_SIZE="${GUEST_DATA_SIZE:-256M}"
# Under TCG a boot to a working agent takes ~10 s on an idle machine; several
# guests booting at once on 2 cores take a lot longer.
GUEST_BOOT_TIMEOUT="${GUEST_BOOT_TIMEOUT:-60}"
GUEST_EXEC_TIMEOUT="${GUEST_EXEC_TIMEOUT:-60}"
# No `quiet`: the kernel log in console.log is what explains a guest that
# never gets its agent up. panic=0 halts on a panic, leaving the message at
# the end of console.log instead of rebooting in a loop.
GUEST_CMDLINE="${GUEST_CMDLINE:-console=ttyS0 panic=0}"
GUEST_KERNEL_META=linux-image-cloud-amd64
# Wanted modules in load order; their dependencies (from the modules' own
# modinfo) are added in front. Whatever the kernel has built in is skipped.
# Debian's cloud kernel builds ext4 and its helpers in, but other kernels
# (e.g. a newer backports one) may not.
GUEST_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
               virtio_blk virtio_console crc16 crc32c_generic mbcache jbd2 ext4)
# Bump when the initramfs recipe in this file changes in a way the stamp
# (assets, kernel, binaries, module list) does not see.
GUEST_INITRAMFS_RECIPE=2

_guest_virsh() { virsh -q -c "$GUEST_URI" "$@"; }

_guest_check_name() {
    [[ "${1:-}" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] \
        || die "invalid guest name '${1:-}' (letters, digits, '_', '.', '-'; at most 64)"
}

_guest_defined() { _guest_virsh domstate "$1" >/dev/null 2>&1; }

_guest_has_agent() {
    # Not `| grep -q`: with pipefail, grep exiting early can fail the pipe.
    local xml
    xml=$(_guest_virsh dumpxml --inactive "$1" 2>/dev/null) || return 1
    [[ "$xml" == *"name='org.qemu.guest_agent.0'"* ]]
}

_guest_ping() {
    _guest_virsh qemu-agent-command "$1" '{"execute":"guest-ping"}' --timeout 5 >/dev/null 2>&1
}

# --- build -------------------------------------------------------------------

_guest_kernel() {
    local b="$GUEST_BUILD_DIR" pkg deb kver
    [[ -s "$b/vmlinuz" && -s "$b/kernel.version" ]] && return 0
    # The metapackage only depends on the versioned image; `apt-cache depends`
    # answers for the candidate, i.e. what `apt-get install` would pick.
    pkg=$(apt-cache depends "$GUEST_KERNEL_META" 2>/dev/null \
          | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ && !n++ { print $2 }')
    [[ -n "$pkg" ]] || die "cannot resolve $GUEST_KERNEL_META to a kernel package (apt-get update?)"
    say "guest: fetching kernel $pkg"
    mkdir -p "$b/debs"
    if ! compgen -G "$b/debs/${pkg}_*.deb" >/dev/null; then
        # apt warns that _apt cannot write here and downloads as root: harmless.
        (cd "$b/debs" && logged guest-build.log apt-get download "$pkg")
    fi
    deb=$(compgen -G "$b/debs/${pkg}_*.deb")
    deb=${deb%%$'\n'*}
    rm -rf "$b/kernel.tmp"
    logged guest-build.log dpkg -x "$deb" "$b/kernel.tmp"
    kver=$(ls "$(_guest_moddir "$b/kernel.tmp")")
    [[ -n "$kver" && -f "$b/kernel.tmp/boot/vmlinuz-$kver" ]] || die "unexpected layout in $deb"
    rm -rf "$b/kernel"
    mv "$b/kernel.tmp" "$b/kernel"
    install -m 0644 "$b/kernel/boot/vmlinuz-$kver" "$b/vmlinuz"
    echo "$kver" >"$b/kernel.version"
}

# Newer Debian kernels ship their modules under /usr/lib (merged /usr).
_guest_moddir() {
    local d
    for d in "$1/lib/modules" "$1/usr/lib/modules"; do
        [[ -d "$d" ]] && { echo "$d"; return 0; }
    done
    die "no lib/modules in the unpacked kernel at $1"
}

# Print the module files to load, dependencies first, as paths relative to
# the kernel's module dir. The .deb has no modules.dep (depmod runs at
# install time), so dependencies come from each module's modinfo section.
_guest_module_order() {
    local mdir="$1" f name
    local -A path=() seen=()
    while IFS= read -r f; do
        name=${f##*/}; name=${name%%.ko*}; name=${name//-/_}
        path[$name]=$f
    done < <(cd "$mdir" && find kernel -name '*.ko*')
    _guest_visit() {
        local m="$1" deps d
        [[ -n "${seen[$m]:-}" ]] && return 0
        seen[$m]=1
        if [[ -z "${path[$m]:-}" ]]; then
            if ! grep -q "/${m//_/[_-]}\.ko\$" "$mdir/modules.builtin"; then
                say "guest: module $m is neither built in nor shipped by this kernel; skipped"
            fi
            return 0
        fi
        deps=$(_guest_modinfo_depends "$mdir/${path[$m]}")
        for d in ${deps//,/ }; do _guest_visit "$d"; done
        echo "${path[$m]}"
    }
    for name in "${GUEST_MODULES[@]}"; do _guest_visit "$name"; done
    unset -f _guest_visit
}

_guest_decompress() {
    case "$1" in
        *.ko) cat "$1" ;;
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -qdc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) die "unknown module compression: $1" ;;
    esac
}

_guest_modinfo_depends() {
    _guest_decompress "$1" | tr '\0' '\n' | sed -n 's/^depends=//p'
}

# Everything the initramfs is made from; a different hash means rebuild.
_guest_initramfs_stamp() {
    local mods="$1"
    {
        echo "recipe $GUEST_INITRAMFS_RECIPE"
        echo "kernel $(cat "$GUEST_BUILD_DIR/kernel.version")"
        echo "modules $mods"
        (cd "$GUEST_ASSETS" && sha256sum init inittab shutdown)
        sha256sum "$(command -v busybox)" /usr/sbin/qemu-ga
    } | sha256sum | cut -d' ' -f1
}

_guest_initramfs() {
    local b="$GUEST_BUILD_DIR" kver mdir mods stamp st m lib applet
    kver=$(cat "$b/kernel.version")
    mdir="$(_guest_moddir "$b/kernel")/$kver"
    mods=$(_guest_module_order "$mdir" | tr '\n' ' ')
    stamp=$(_guest_initramfs_stamp "$mods")
    [[ -s "$b/initramfs.img" && "$(cat "$b/initramfs.stamp" 2>/dev/null)" == "$stamp" ]] && return 0
    say "guest: building initramfs"
    [[ -x /usr/sbin/qemu-ga ]] || die "/usr/sbin/qemu-ga missing (apt-get install qemu-guest-agent)"
    st="$b/initramfs.tmp"
    rm -rf "$st"
    mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,etc,lib/modules,proc,sys,dev,run,tmp,data,var/lib}
    install -m 0755 "$(command -v busybox)" "$st/bin/busybox"
    # Every applet at its usual path, so scripts and agent commands find them.
    while IFS= read -r applet; do
        [[ -e "$st/$applet" ]] || ln -s /bin/busybox "$st/$applet"
    done < <(busybox --list-full)
    install -m 0755 "$GUEST_ASSETS/init" "$st/init"
    install -m 0644 "$GUEST_ASSETS/inittab" "$st/etc/inittab"
    install -m 0755 "$GUEST_ASSETS/shutdown" "$st/sbin/shutdown"
    printf 'ID=stack-guest\nNAME="stack guest fixture"\nPRETTY_NAME="stack guest fixture (busybox, kernel %s)"\n' \
        "$kver" >"$st/etc/os-release"
    : >"$st/etc/modules.load"
    for m in $mods; do
        _guest_decompress "$mdir/$m" >"$st/lib/modules/$(basename "${m%%.ko*}").ko"
        echo "$(basename "${m%%.ko*}").ko" >>"$st/etc/modules.load"
    done
    # qemu-ga is Debian's dynamically linked build: take its libraries and the
    # dynamic loader at the paths ldd reports (the loader path is baked into
    # the binary, and it must be executable like the binary itself).
    install -D -m 0755 /usr/sbin/qemu-ga "$st/usr/sbin/qemu-ga"
    while IFS= read -r lib; do
        install -D -m 0755 "$(readlink -f "$lib")" "$st$lib"
    done < <(ldd /usr/sbin/qemu-ga | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    # The kernel opens /dev/console before /init runs and before devtmpfs is
    # mounted; without this node init starts with no stdout.
    mknod -m 0600 "$st/dev/console" c 5 1
    (cd "$st" && find . -print0 | LC_ALL=C sort -z \
        | cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -6 >"$b/initramfs.img.tmp"
    chmod 0644 "$b/initramfs.img.tmp"
    # Replace, never rewrite in place: running guests keep the old inode.
    mv "$b/initramfs.img.tmp" "$b/initramfs.img"
    echo "$stamp" >"$b/initramfs.stamp"
    rm -rf "$st"
}

_guest_base_disk() {
    local b="$GUEST_BUILD_DIR" c
    # Never rebuilt while present: every overlay depends on its exact bytes.
    [[ -s "$b/base.raw" ]] && return 0
    say "guest: making the base data disk"
    c="$b/base-content"
    rm -rf "$c" "$b/base.raw.tmp"
    mkdir -p "$c/fixture"
    # Known content, so tests can verify a snapshot reads through the chain.
    echo "hello from the guest fixture base image" >"$c/fixture/hello.txt"
    seq 1 100000 >"$c/fixture/seq.txt"
    # No lazy init: otherwise the guest's ext4lazyinit thread zeroes inode
    # tables into the overlay after every first boot, inflating snapshots.
    logged guest-build.log mkfs.ext4 -q -F -L stack-data -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 \
        -d "$c" "$b/base.raw.tmp" "$GUEST_DATA_SIZE"
    # Read-only: qemu (libvirt-qemu after relabelling) must never write the
    # shared backing file, whatever a block job asks for.
    chmod 0444 "$b/base.raw.tmp"
    mv "$b/base.raw.tmp" "$b/base.raw"
    rm -rf "$c"
}

guest_build() {
    mkdir -p "$GUEST_BUILD_DIR"
    chmod 0755 "$GUEST_BUILD_DIR"
    _guest_kernel
    _guest_initramfs
    _guest_base_disk
}

# --- per guest ---------------------------------------------------------------

# Escape a value for the XML template and for sed's replacement text.
_guest_subst_value() {
    # sed, not ${v//...}: bash 5.2 expands '&' in a substitution's replacement.
    printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e "s/'/\&apos;/g" \
        -e 's/[\\|&]/\\&/g'
}

guest_define() {
    local name="${1:-}" agent=1 dir b="$GUEST_BUILD_DIR" uuid
    _guest_check_name "$name"
    case "${2:-}" in
        "") ;;
        --no-agent) agent= ;;
        *) die "guest_define: unknown option '$2' (usage: guest_define NAME [--no-agent])" ;;
    esac
    [[ -s "$b/vmlinuz" && -s "$b/initramfs.img" && -s "$b/base.raw" ]] \
        || die "the guest fixture is not built under $b (run guest_build / deploy/dev/stack up)"
    dir="$GUEST_ROOT/$name"
    mkdir -p "$dir"
    # qemu runs as libvirt-qemu and must traverse to the overlay.
    chmod 0755 "$GUEST_ROOT" "$dir"
    if [[ ! -s "$dir/disk.qcow2" ]]; then
        # Absolute backing path with an explicit format: qemu refuses to probe
        # the format of a backing file, and libvirt needs it to label the chain.
        logged guest-build.log qemu-img create -q -f qcow2 -b "$b/base.raw" -F raw "$dir/disk.qcow2.tmp"
        mv "$dir/disk.qcow2.tmp" "$dir/disk.qcow2"
    fi
    if _guest_defined "$name"; then
        # A definition left by another checkout (another STACK_DIR) points at
        # files that are not ours: replace it rather than boot someone else's disk.
        local xml
        xml=$(_guest_virsh dumpxml --inactive "$name" 2>/dev/null || true)
        # Match the whole quoted path: /check/x/.stack/... contains /x/.stack/...
        [[ "$xml" == *"file='$dir/disk.qcow2'"* ]] && return 0
        say "guest $name is defined for another checkout; redefining it for $STACK_DIR"
        _guest_virsh destroy "$name" >/dev/null 2>&1 || true
        logged guest-build.log _guest_virsh undefine "$name" \
            --snapshots-metadata --checkpoints-metadata --managed-save
    fi
    # Keep the UUID across re-definitions: nova instance rows refer to it.
    [[ -s "$dir/uuid" ]] || cat /proc/sys/kernel/random/uuid >"$dir/uuid"
    uuid=$(cat "$dir/uuid")
    sed -e "s|@NAME@|$(_guest_subst_value "$name")|" \
        -e "s|@UUID@|$uuid|" \
        -e "s|@GUEST_DIR@|$(_guest_subst_value "$dir")|" \
        -e "s|@MEMORY_MIB@|$GUEST_MEMORY_MIB|" \
        -e "s|@KERNEL@|$(_guest_subst_value "$b/vmlinuz")|" \
        -e "s|@INITRD@|$(_guest_subst_value "$b/initramfs.img")|" \
        -e "s|@CMDLINE@|$(_guest_subst_value "$GUEST_CMDLINE")|" \
        -e "s|@DISK@|$(_guest_subst_value "$dir/disk.qcow2")|" \
        -e "s|@CONSOLE_LOG@|$(_guest_subst_value "$dir/console.log")|" \
        "$GUEST_ASSETS/domain.xml.in" >"$dir/domain.xml"
    if [[ -n "$agent" ]]; then
        sed -i -e '/@AGENT_BEGIN@/d' -e '/@AGENT_END@/d' "$dir/domain.xml"
    else
        sed -i -e '/@AGENT_BEGIN@/,/@AGENT_END@/d' "$dir/domain.xml"
    fi
    logged guest-build.log _guest_virsh define "$dir/domain.xml"
}

guest_start() {
    local name="${1:-}" state start=$SECONDS
    _guest_check_name "$name"
    state=$(_guest_virsh domstate "$name" 2>/dev/null) \
        || die "guest $name is not defined (guest_define $name)"
    case "$state" in
        running) ;;
        paused) logged guests.log _guest_virsh resume "$name" ;;
        *) logged guests.log _guest_virsh start "$name" ;;
    esac
    _guest_has_agent "$name" || return 0
    if ! wait_for "$GUEST_BOOT_TIMEOUT" _guest_ping "$name"; then
        say "guest $name: last console lines ($GUEST_ROOT/$name/console.log):"
        # uniq: a respawning agent repeats the same line hundreds of times.
        tail -n 500 "$GUEST_ROOT/$name/console.log" 2>/dev/null | uniq | tail -n 30 >&2 || true
        die "guest $name: the guest agent did not answer guest-ping within ${GUEST_BOOT_TIMEOUT}s"
    fi
    [[ "$state" == running ]] || say "guest $name: agent ready after $((SECONDS - start))s"
}

# Run a shell command in the guest through the agent's guest-exec. Prints its
# stdout (stderr to stderr) and returns its exit status, 128+N when killed by
# signal N, and 255 when the agent could not run it or it did not finish
# within GUEST_EXEC_TIMEOUT.
guest_exec() {
    local name="${1:-}" cmd="${2:-}" req reply pid deadline rc
    _guest_check_name "$name"
    req=$(jq -cn --arg c "$cmd" \
        '{execute: "guest-exec", arguments: {path: "/bin/sh", arg: ["-c", $c], "capture-output": true}}')
    reply=$(_guest_virsh qemu-agent-command "$name" "$req") \
        || { say "guest $name: guest-exec failed"; return 255; }
    pid=$(jq -r '.return.pid' <<<"$reply")
    deadline=$((SECONDS + GUEST_EXEC_TIMEOUT))
    while :; do
        reply=$(_guest_virsh qemu-agent-command "$name" \
            "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") \
            || { say "guest $name: guest-exec-status failed for pid $pid"; return 255; }
        [[ "$(jq -r '.return.exited' <<<"$reply")" == true ]] && break
        if (( SECONDS >= deadline )); then
            say "guest $name: command still running after ${GUEST_EXEC_TIMEOUT}s (guest pid $pid)"
            return 255
        fi
        sleep 0.2
    done
    jq -r '.return["out-data"] // empty' <<<"$reply" | base64 -d
    jq -r '.return["err-data"] // empty' <<<"$reply" | base64 -d >&2
    rc=$(jq -r 'if .return.signal then 128 + .return.signal else .return.exitcode end' <<<"$reply")
    return "$rc"
}

guest_undefine() {
    local name="${1:-}"
    _guest_check_name "$name"
    if _guest_defined "$name"; then
        _guest_virsh destroy "$name" >/dev/null 2>&1 || true
        # Tests leave checkpoints, snapshots or a managed save behind; none of
        # them may keep the definition alive.
        logged guests.log _guest_virsh undefine "$name" \
            --snapshots-metadata --checkpoints-metadata --managed-save
    fi
    rm -rf "${GUEST_ROOT:?}/$name"
}

# --- the stack's default guest -----------------------------------------------

guest_up() {
    guest_build
    guest_define "$GUEST_NAME"
    guest_start "$GUEST_NAME"
}

guest_down() {
    _guest_defined "$GUEST_NAME" || return 0
    [[ "$(_guest_virsh domstate "$GUEST_NAME")" == "shut off" ]] && return 0
    say "stopping guest $GUEST_NAME"
    logged guests.log _guest_virsh destroy "$GUEST_NAME"
}

_guest_status_line() {
    local name="$1" state detail
    if ! state=$(_guest_virsh domstate "$name" 2>/dev/null); then
        printf '%-13s %-5s %s\n' guest down "$name (not defined)"
        return
    fi
    if [[ "$state" != running ]]; then
        printf '%-13s %-5s %s\n' guest down "$name ($state)"
    elif ! _guest_has_agent "$name"; then
        printf '%-13s %-5s %s\n' guest up "$name (running, no agent channel)"
    elif _guest_ping "$name"; then
        printf '%-13s %-5s %s\n' guest up "$name (running, agent ok)"
    else
        printf '%-13s %-5s %s\n' guest down "$name (running, agent not answering)"
    fi
}

# The stack's guest first, then any other guest the fixture created (tests
# that were killed before their cleanup leave some behind).
guest_status() {
    local d
    if [[ ! -s "$GUEST_BUILD_DIR/initramfs.img" || ! -s "$GUEST_BUILD_DIR/base.raw" ]]; then
        printf '%-13s %-5s %s\n' guest down "(fixture not built)"
        return 0
    fi
    if ! _guest_virsh version >/dev/null 2>&1; then
        printf '%-13s %-5s %s\n' guest down "(libvirtd not reachable at $GUEST_URI)"
        return 0
    fi
    _guest_status_line "$GUEST_NAME"
    for d in "$GUEST_ROOT"/*/; do
        [[ -d "$d" && "$(basename "$d")" != "$GUEST_NAME" ]] || continue
        _guest_status_line "$(basename "$d")"
    done
}

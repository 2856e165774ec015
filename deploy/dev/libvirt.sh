# libvirtd + virtlogd (sourced by `stack`), started without systemd.

LIBVIRT_URI=qemu:///system

libvirt_running() { virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

libvirt_up() {
    if ! pgrep -x virtlogd >/dev/null; then
        say "starting virtlogd"
        virtlogd -d
    fi
    if ! libvirt_running; then
        say "starting libvirtd"
        pgrep -x libvirtd >/dev/null && pkill -x libvirtd && sleep 1
        libvirtd -d --pid-file "$RUN_DIR/libvirtd.pid" >>"$LOG_DIR/libvirtd.log" 2>&1
        wait_for 60 libvirt_running || die "libvirtd did not start"
    fi
}

libvirt_down() {
    pgrep -x libvirtd >/dev/null && { say "stopping libvirtd"; pkill -x libvirtd; }
    pgrep -x virtlogd >/dev/null && { say "stopping virtlogd"; pkill -x virtlogd; }
    return 0
}

libvirt_status() {
    if libvirt_running; then
        echo "libvirtd      up    $LIBVIRT_URI (libvirt $(virsh -c "$LIBVIRT_URI" version 2>/dev/null | awk '/Using library/ {print $4}'), QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}'))"
    else
        echo "libvirtd      down"
    fi
}

# What a Kolla nova_compute container gives nova-compute, reproduced on the
# local stack (sourced by the Kolla-shaped end-to-end test):
#
#   - user nova, uid/gid 42436, also in the group QEMU runs as (Kolla: qemu,
#     here Debian's libvirt-qemu), so the service runs unprivileged;
#   - its home with .config/libvirt/auth.conf (Kolla renders the SASL
#     credentials there; here: the stack's auth.conf of libvirt.sh);
#   - Kolla's own healthcheck script, `healthcheck_port`, taken from the
#     kolla release on PyPI (the image builder ships it in docker/base/), so
#     the test runs the exact check Kolla-Ansible runs, not a copy of it.
#
# libvirt_up (auth.conf, SASL listener) must have run first.

KOLLA_DIR="$STACK_DIR/kolla"
KOLLA_NOVA_UID=42436
KOLLA_NOVA_HOME="$KOLLA_DIR/home"
KOLLA_RELEASE=20.0.0
KOLLA_HEALTHCHECK_PORT="$KOLLA_DIR/healthcheck_port"

_kolla_nova_user() {
    if ! getent group nova >/dev/null; then
        groupadd --gid "$KOLLA_NOVA_UID" nova
    fi
    if ! getent passwd nova >/dev/null; then
        useradd --uid "$KOLLA_NOVA_UID" --gid nova --no-create-home \
            --home-dir /var/lib/nova --shell /usr/sbin/nologin nova
    fi
    [[ "$(id -u nova)" == "$KOLLA_NOVA_UID" ]] ||
        die "a user nova exists with uid $(id -u nova), not Kolla's $KOLLA_NOVA_UID"
    id -nG nova | tr ' ' '\n' | grep -qx libvirt-qemu || usermod -aG libvirt-qemu nova
}

_kolla_healthcheck() {
    [[ -x "$KOLLA_HEALTHCHECK_PORT" ]] && return 0
    say "fetching Kolla $KOLLA_RELEASE's healthcheck_port from PyPI"
    local tmp; tmp=$(mktemp -d)
    logged kolla.log "$STACK_DIR/venvs/nova/bin/pip" download --no-deps --no-binary :all: \
        "kolla==$KOLLA_RELEASE" -d "$tmp"
    tar -xzf "$tmp/kolla-$KOLLA_RELEASE.tar.gz" -C "$tmp" "kolla-$KOLLA_RELEASE/docker/base/healthcheck_port"
    install -m 0755 "$tmp/kolla-$KOLLA_RELEASE/docker/base/healthcheck_port" "$KOLLA_HEALTHCHECK_PORT"
    rm -rf "$tmp"
}

kolla_up() {
    mkdir -p "$KOLLA_DIR"
    chmod o+x "$KOLLA_DIR"
    _kolla_nova_user
    [[ -f "$LIBVIRT_AUTH_FILE" ]] || die "no libvirt auth.conf at $LIBVIRT_AUTH_FILE (run libvirt_up first)"
    install -d -o nova -g nova -m 0750 "$KOLLA_NOVA_HOME" "$KOLLA_NOVA_HOME/.config" \
        "$KOLLA_NOVA_HOME/.config/libvirt"
    install -o nova -g nova -m 0600 "$LIBVIRT_AUTH_FILE" "$KOLLA_NOVA_HOME/.config/libvirt/auth.conf"
    _kolla_healthcheck
}

# Debian packages of the real stack (sourced by `stack`).
#
# libvirt 11 and QEMU 10 come from bookworm-backports: the machine's qemu-utils
# is already the backports 10.0 build, so bookworm's qemu-system 7.2 conflicts.

# sasl2-bin (saslpasswd2, sasldblistusers2) and libsasl2-modules (the
# DIGEST-MD5 plugin): libvirtd's SASL on TCP, as Kolla's default (libvirt.sh).
# mariadb-server: nova's and Glance's databases (mariadb.sh).
APT_PACKAGES=(rabbitmq-server e2fsprogs cpio busybox-static qemu-guest-agent
              python3-venv python3-dev build-essential libxml2-dev libxslt1-dev
              libffi-dev libssl-dev pkg-config curl jq openssl
              sasl2-bin libsasl2-modules mariadb-server)
APT_BACKPORTS=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
               qemu-system-x86 libvirt-dev)

apt_missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || printf '%s\n' "$p"
    done
}

apt_backports_source() {
    local list=/etc/apt/sources.list.d/bookworm-backports.sources
    [[ -f "$list" ]] && return 0
    say "adding bookworm-backports"
    cat >"$list" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT_UPDATED=
}

apt_up() {
    local missing_main missing_bpo
    apt_backports_source
    missing_main=$(apt_missing "${APT_PACKAGES[@]}")
    missing_bpo=$(apt_missing "${APT_BACKPORTS[@]}")
    [[ -z "$missing_main$missing_bpo" ]] && return 0
    say "installing Debian packages: $(echo $missing_main $missing_bpo)"
    export DEBIAN_FRONTEND=noninteractive
    [[ -n "${APT_UPDATED:-}" ]] || logged apt.log apt-get update
    APT_UPDATED=1
    if [[ -n "$missing_bpo" ]]; then
        # shellcheck disable=SC2086
        logged apt.log apt-get install -y --no-install-recommends -t bookworm-backports $missing_bpo
    fi
    if [[ -n "$missing_main" ]]; then
        # shellcheck disable=SC2086
        logged apt.log apt-get install -y --no-install-recommends $missing_main
    fi
}

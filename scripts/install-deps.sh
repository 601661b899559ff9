#!/bin/sh
# Installs Blowfish's build and test dependencies from Debian's archive on a Debian 12
# (bookworm) machine: the toolchain and libraries for QEMU and for our own code, meson from
# bookworm-backports (QEMU 10 needs >= 1.5), the firmware the patched QEMU loads at run
# time, libvirt for tests/libvirt (the test starts its own libvirtd), and clang with its
# fuzzer and sanitizer runtimes for scripts/fuzz.sh and scripts/sanitize.sh. Adds the apt
# entries it needs (bookworm-backports binaries, trixie sources for QEMU's source package).
# Fast when everything is already there.
set -eu

PACKAGES="build-essential pkg-config git dpkg-dev ninja-build flex bison python3-venv
python3 libglib2.0-dev libpixman-1-dev libfdt-dev libslirp-dev zlib1g-dev
libibverbs-dev librdmacm-dev libgnutls28-dev libxxhash-dev openssl seabios qemu-system-data ipxe-qemu
busybox-static cpio lz4 xz-utils iproute2 ibverbs-providers ibverbs-utils rdmacm-utils perftest
libvirt-daemon-system libvirt-clients clang libclang-rt-14-dev"
BACKPORTS_PACKAGES="meson python3-pycotap"

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=
for p in $PACKAGES $BACKPORTS_PACKAGES; do
    dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
meson_ok=no
if command -v meson >/dev/null 2>&1 &&
   dpkg --compare-versions "$(meson --version)" ge 1.5; then
    meson_ok=yes
fi
if [ -z "$missing" ] && [ "$meson_ok" = yes ]; then
    exit 0
fi

# Same mirror and keyring as the machine's own bookworm entry.
list=/etc/apt/sources.list.d/blowfish.sources
if [ ! -f "$list" ]; then
    echo "install-deps: adding bookworm-backports and trixie deb-src to $list"
    $SUDO tee "$list" >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $PACKAGES
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports $BACKPORTS_PACKAGES

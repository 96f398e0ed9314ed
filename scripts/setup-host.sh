#!/usr/bin/env bash
# Installs the host packages novabox needs for tests and benchmarks.
#
#   scripts/setup-host.sh           qemu-utils (qemu-img / qemu-io: reference
#                                   implementation for the disk-image tests),
#                                   cpio (cross-checks the kit's cpio writer),
#                                   libarchive-tools (bsdtar: cross-checks the
#                                   kit's ISO 9660 writer), chromium, nodejs
#                                   and npm (the browser console test drives
#                                   headless Chromium through playwright-core,
#                                   which `npm ci --prefix crates/vnc/web` gets),
#                                   and vncdotool from PyPI (a real VNC client)
#   scripts/setup-host.sh --peers   additionally qemu-system-x86 (the TCG/KVM
#                                   performance peer and kit boot check)
#
# Only missing packages are installed, non-interactively; running it again is
# a no-op. Needs root (apt-get). Guest software is NOT installed here: the
# guest kit (`cargo xtask kit`) extracts its Debian packages into kit-cache/.
set -euo pipefail

peers=0
for arg in "$@"; do
    case "$arg" in
        --peers) peers=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "setup-host: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup-host: need root or sudo" >&2; exit 1; }
    SUDO="sudo"
fi

# installed PKG: true when dpkg reports PKG fully installed.
installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

updated=0
# ensure_lists: apt-get update once, and only when we are about to install.
ensure_lists() {
    if [ "$updated" -eq 0 ]; then
        echo "setup-host: apt-get update"
        $SUDO apt-get update -q
        updated=1
    fi
}

# install PKG...: installs those of PKG... that are missing.
install() {
    local missing=()
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "setup-host: already installed: $*"
        return 0
    fi
    ensure_lists
    echo "setup-host: installing ${missing[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "$peers" -eq 1 ]; then
    # On this Debian the installed qemu-utils (a backport) Breaks the
    # bookworm qemu-system-common, so apt removes qemu-utils when
    # qemu-system-x86 comes in; install qemu-utils again afterwards.
    install qemu-system-x86
fi
install qemu-utils cpio libarchive-tools chromium
# A node from elsewhere (NodeSource's nodejs bundles npm and conflicts with Debian's npm)
# is used as it is; only what is missing comes from Debian.
command -v node >/dev/null || install nodejs
command -v npm >/dev/null || install npm

# vncdotool (PyPI): the real VNC client the VNC tests decode the screen with.
if ! python3 -c "import vncdotool" 2>/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || install python3-pip
    echo "setup-host: pip install vncdotool"
    # Debian's own python3 refuses pip installs outside a venv unless told (PEP 668).
    python3 -m pip install -q --user vncdotool 2>/dev/null \
        || python3 -m pip install -q --user --break-system-packages vncdotool
fi

qemu-img --version | head -n 1
echo "node $(node --version), $(chromium --version 2>/dev/null | head -n 1), vncdotool $(python3 -c 'import importlib.metadata as m; print(m.version("vncdotool"))')"
if [ "$peers" -eq 1 ]; then
    qemu-system-x86_64 --version | head -n 1
fi
echo "setup-host: ok"

#!/usr/bin/env bash
# setup.sh - install everything h2replay needs to build and test (Debian 12).
#
# Idempotent: packages already installed are left alone, `apt-get update` runs
# only when something is missing, and a machine that has it all is done in a
# second. Non-interactive. Prints what it installed; exits non-zero with a
# clear message when a package cannot be installed.
#
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Build toolchain and libraries.
BUILD_PKGS=(
    cmake make gcc clang libclang-rt-14-dev pkg-config
    libpcap-dev libnghttp2-dev libssl-dev libzstd-dev libjansson-dev
    libsqlite3-dev libpq-dev libhttp-parser-dev
)
# Peers and oracles for the end-to-end tests, demo and benchmark.
# nghttp2-proxy (nghttpx): the only Debian h2c server that answers the
# HTTP/1.1 `Upgrade: h2c` dance (nghttpd speaks prior knowledge only).
# tshark brings wireshark-common (editcap, capinfos).
PEER_PKGS=(
    nghttp2-server nghttp2-client nghttp2-proxy curl tshark tcpdump jq python3 chromium
    postgresql openssl
)
PKGS=("${BUILD_PKGS[@]}" "${PEER_PKGS[@]}")

die() {
    echo "setup.sh: error: $*" >&2
    exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        die "must run as root (or with passwordless sudo) to install packages"
    fi
fi

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only"

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

missing=()
for p in "${PKGS[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup.sh: all ${#PKGS[@]} packages already installed; nothing to do"
    exit 0
fi

echo "setup.sh: missing: ${missing[*]}"

# tshark asks whether non-root users may capture; answer "no" up front so the
# install never stops at a debconf prompt.
if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${SUDO[@]}" debconf-set-selections ||
        die "debconf-set-selections failed (preseeding wireshark-common/install-setuid)"
fi

# Bounded: apt has its own network timeouts, but never let a stuck mirror or a
# held dpkg lock hang CI forever.
APT_OPTS=(-o Dpkg::Use-Pty=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

echo "setup.sh: apt-get update"
timeout 900 "${SUDO[@]}" apt-get "${APT_OPTS[@]}" update -q ||
    die "apt-get update failed (exit $?); check the network/mirror configuration"

echo "setup.sh: apt-get install ${missing[*]}"
timeout 1800 "${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed (exit $?) for: ${missing[*]}"

still=()
for p in "${missing[@]}"; do
    is_installed "$p" || still+=("$p")
done
[[ ${#still[@]} -eq 0 ]] || die "still not installed after apt-get: ${still[*]}"

echo "setup.sh: installed: ${missing[*]}"

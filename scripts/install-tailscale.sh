#!/usr/bin/env bash
# install-tailscale.sh - build a pinned Tailscale (tailscaled, tailscale, derper) into the cache.
#
#   scripts/install-tailscale.sh [--force] [VERSION]          (default: v1.80.3)
#
# Runs `go install tailscale.com/cmd/{tailscaled,tailscale,derper}@VERSION` and moves the
# binaries to .cache/bin/tailscale-VERSION/ (repo-relative; .cache/ is git-ignored), with the
# version, Go release and build time in build.txt there. Skipped when all three are already there
# and run. Prints three lines:
#   TAILSCALED=/abs/path/to/tailscaled
#   TAILSCALE=/abs/path/to/tailscale
#   DERPER=/abs/path/to/derper
# derper is Tailscale's relay server. A client only leaves the "Starting" state for "Running" once
# it holds a live DERP connection (or a live peer), so an offline sample runs one on loopback
# (scripts/capture-tailscale-sample.sh).
# The binaries are stamped with the plain release number (`tailscale version` prints 1.80.3; the
# official build_dist.sh would add the commit hashes, which a module download does not carry).
#
# Why v1.80.3: it is the oldest client that every Headscale release from 0.23 to 0.29 accepts
# (0.29 refuses capability versions below 1.80's), see shared/headscale/NOTES.md §4.2. Its
# capability version is fixed at build time (tailcfg.CurrentCapabilityVersion), so a client built
# from the module tag speaks exactly what the release does.
#
# Same pinned version list as scripts/install-headscale.sh: `go install pkg@version` reads
# `<proxy>/<module>/@v/list` for deprecations and retractions, and the module proxy reachable
# from our machines refuses version lists (403) for some modules while serving exact versions.
# A local file:// proxy in front of the real one answers that one list with the requested
# version only; every other request falls through to the real proxy and is checked against
# sum.golang.org as usual.
#
# Environment: GO (go binary; default `go` in PATH, else /usr/local/go/bin/go),
# H2R_GO_INSTALL_TIMEOUT (seconds, default 1800).
# Exit status: 0 built or present, 1 the build failed (its log is printed), 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
CACHE_BIN=$ROOT/.cache/bin
MODULE=tailscale.com
VERSION=v1.80.3
TIMEOUT=${H2R_GO_INSTALL_TIMEOUT:-1800}

die() { echo "install-tailscale.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

force=0
nver=0
for a in "$@"; do
    case $a in
    -h | --help) usage; exit 0 ;;
    --force) force=1 ;;
    v[0-9]*.[0-9]*.[0-9]*) VERSION=$a; nver=$((nver + 1)) ;;
    *) echo "install-tailscale.sh: '$a' is not a release tag like v1.80.3 (see --help)" >&2; exit 2 ;;
    esac
done
((nver <= 1)) || { echo "install-tailscale.sh: one VERSION at a time" >&2; exit 2; }

dest=$CACHE_BIN/tailscale-$VERSION
if [[ $force -eq 0 && -x $dest/tailscaled && -x $dest/tailscale && -x $dest/derper ]] &&
    [[ $("$dest/tailscale" version 2>/dev/null | head -1) == "${VERSION#v}" ]] &&
    "$dest/tailscaled" --version >/dev/null 2>&1; then
    echo "install-tailscale.sh: $VERSION already in $dest (skipped)" >&2
    echo "TAILSCALED=$dest/tailscaled"
    echo "TAILSCALE=$dest/tailscale"
    echo "DERPER=$dest/derper"
    exit 0
fi

GO=${GO:-}
if [[ -z $GO ]]; then
    GO=$(command -v go || true)
    [[ -n $GO ]] || GO=/usr/local/go/bin/go
fi
[[ -x $GO ]] || die "no Go toolchain (looked for 'go' in PATH and /usr/local/go/bin/go); set GO="
upstream_proxy=$("$GO" env GOPROXY)
[[ -n $upstream_proxy && $upstream_proxy != off ]] ||
    die "GOPROXY is '$upstream_proxy'; a module proxy is needed"

mkdir -p "$CACHE_BIN"
work=$(mktemp -d "$CACHE_BIN/.build-tailscale-$VERSION.XXXXXX")
trap 'rm -rf "$work"' EXIT
pins=$work/pins
mkdir -p "$pins/$MODULE/@v" "$work/bin"
printf '%s\n' "$VERSION" >"$pins/$MODULE/@v/list"
log=$work/build.log
# A module build has no VCS stamp, so tailscale would call itself "1.80.3-ERR-BuildInfo", and that
# string goes on the wire (Hostinfo.IPNVersion in every register and map request). Stamp the plain
# release number the way build_dist.sh does (it adds commit hashes we do not have here).
plain=${VERSION#v}
ldflags="-X tailscale.com/version.longStamp=$plain -X tailscale.com/version.shortStamp=$plain"
cmds=(tailscaled tailscale derper)
pkgs=()
for c in "${cmds[@]}"; do pkgs+=("$MODULE/cmd/$c@$VERSION"); done
echo "install-tailscale.sh: building $MODULE/cmd/{tailscaled,tailscale,derper}@$VERSION" \
    "(timeout ${TIMEOUT}s)" >&2
start=$(date +%s.%N)
set +e
GOBIN=$work/bin GOPROXY="file://$pins,$upstream_proxy" GOFLAGS=-buildvcs=false \
    timeout "$TIMEOUT" "$GO" install -ldflags "$ldflags" \
    "${pkgs[@]}" >"$log" 2>&1
brc=$?
set -e
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
missing=0
for c in "${cmds[@]}"; do [[ -x $work/bin/$c ]] || missing=1; done
if [[ $brc -ne 0 || $missing -ne 0 ]]; then
    echo "install-tailscale.sh: $VERSION FAILED after ${secs}s (exit $brc; 124 = timeout); log:" >&2
    sed 's/^/    /' "$log" >&2
    mkdir -p "$dest"
    cp "$log" "$dest/build-failed.log"
    exit 1
fi
mkdir -p "$dest"
mv -f "$work/bin/tailscaled" "$dest/tailscaled"
mv -f "$work/bin/tailscale" "$dest/tailscale"
mv -f "$work/bin/derper" "$dest/derper"
{
    echo "version=$VERSION"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$secs"
    echo "go=$("$GO" env GOVERSION)"
    echo "cores=$(nproc)"
    echo "reports=$("$dest/tailscale" version 2>/dev/null | head -1)"
} >"$dest/build.txt"
rm -f "$dest/build-failed.log"
echo "install-tailscale.sh: $VERSION built in ${secs}s -> $dest/{tailscaled,tailscale,derper}" >&2
echo "TAILSCALED=$dest/tailscaled"
echo "TAILSCALE=$dest/tailscale"
echo "DERPER=$dest/derper"

#!/usr/bin/env bash
# install-headscale.sh - build pinned Headscale releases into a project-local cache.
#
#   scripts/install-headscale.sh [--force] [VERSION...]     (default: v0.29.2 v0.23.0)
#
# Each VERSION is built with `go install github.com/juanfont/headscale/cmd/headscale@VERSION`
# into .cache/bin/headscale-VERSION/headscale (repo-relative; .cache/ is git-ignored) and
# skipped when that binary already exists and runs. The build time is printed and kept in
# .cache/bin/headscale-VERSION/build.txt. Prints one line per version:
#   HEADSCALE_<VERSION>=/abs/path/to/headscale
#
# Why the pinned version list: `go install pkg@version` also checks the module's deprecation
# and retractions, which reads `<proxy>/github.com/juanfont/headscale/@v/list`. The module
# proxy reachable from our machines answers that listing with "403 This module version is not
# available" while serving .info/.mod/.zip for exact versions, so a plain `go install` fails
# before it builds anything. We therefore put a one-line @v/list (the requested version only)
# in a local file:// proxy in front of the real one; every other request falls through to the
# real proxy (a file:// proxy answers "not found" for files it lacks, and a comma in GOPROXY
# means "try the next one on not found"). Nothing else is listed or looked up.
#
# Environment: GO (go binary; default `go` in PATH, else /usr/local/go/bin/go),
# H2R_GO_INSTALL_TIMEOUT (seconds per build, default 1800).
# Exit status: 0 all built or present, 1 a build failed (its log is printed), 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
CACHE_BIN=$ROOT/.cache/bin
DEFAULT_VERSIONS=(v0.29.2 v0.23.0)
MODULE=github.com/juanfont/headscale
TIMEOUT=${H2R_GO_INSTALL_TIMEOUT:-1800}

die() { echo "install-headscale.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

force=0
versions=()
for a in "$@"; do
    case $a in
    -h | --help) usage; exit 0 ;;
    --force) force=1 ;;
    v[0-9]*.[0-9]*.[0-9]*) versions+=("$a") ;;
    *) echo "install-headscale.sh: '$a' is not a release tag like v0.29.2 (see --help)" >&2; exit 2 ;;
    esac
done
[[ ${#versions[@]} -gt 0 ]] || versions=("${DEFAULT_VERSIONS[@]}")

GO=${GO:-}
if [[ -z $GO ]]; then
    GO=$(command -v go || true)
    [[ -n $GO ]] || GO=/usr/local/go/bin/go
fi
[[ -x $GO ]] || die "no Go toolchain (looked for 'go' in PATH and /usr/local/go/bin/go); set GO="

upstream_proxy=$("$GO" env GOPROXY)
[[ -n $upstream_proxy && $upstream_proxy != off ]] || die "GOPROXY is '$upstream_proxy'; a module proxy is needed"

mkdir -p "$CACHE_BIN"
rc=0
for v in "${versions[@]}"; do
    dest=$CACHE_BIN/headscale-$v
    if [[ $force -eq 0 && -x $dest/headscale ]] && "$dest/headscale" version >/dev/null 2>&1; then
        echo "install-headscale.sh: $v already in $dest (skipped)" >&2
        echo "HEADSCALE_$v=$dest/headscale"
        continue
    fi
    work=$(mktemp -d "$CACHE_BIN/.build-$v.XXXXXX")
    pins=$work/pins
    mkdir -p "$pins/$MODULE/@v" "$work/bin"
    printf '%s\n' "$v" >"$pins/$MODULE/@v/list"
    log=$work/build.log
    echo "install-headscale.sh: building $MODULE/cmd/headscale@$v (timeout ${TIMEOUT}s)" >&2
    start=$(date +%s.%N)
    set +e
    GOBIN=$work/bin GOPROXY="file://$pins,$upstream_proxy" GOFLAGS=-buildvcs=false \
        timeout "$TIMEOUT" "$GO" install "$MODULE/cmd/headscale@$v" >"$log" 2>&1
    brc=$?
    set -e
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [[ $brc -ne 0 || ! -x $work/bin/headscale ]]; then
        echo "install-headscale.sh: $v FAILED after ${secs}s (exit $brc; 124 = timeout); log:" >&2
        sed 's/^/    /' "$log" >&2
        mkdir -p "$dest"
        cp "$log" "$dest/build-failed.log"
        rm -rf "$work"
        rc=1
        continue
    fi
    mkdir -p "$dest"
    mv -f "$work/bin/headscale" "$dest/headscale"
    {
        echo "version=$v"
        echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "build_seconds=$secs"
        echo "go=$("$GO" env GOVERSION)"
        echo "cores=$(nproc)"
    } >"$dest/build.txt"
    rm -f "$dest/build-failed.log"
    rm -rf "$work"
    echo "install-headscale.sh: $v built in ${secs}s -> $dest/headscale" >&2
    echo "HEADSCALE_$v=$dest/headscale"
done
exit $rc

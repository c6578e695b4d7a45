#!/usr/bin/env bash
# install-grpcurl.sh - build a pinned grpcurl into the project-local cache.
#
#   scripts/install-grpcurl.sh [--force] [VERSION]          (default: v1.9.3)
#
# Runs `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@VERSION` and moves the
# binary to .cache/bin/grpcurl (repo-relative; .cache/ is git-ignored), with the version,
# Go release and build time in .cache/bin/grpcurl.txt. Skipped when that binary already
# reports VERSION. Prints GRPCURL=/abs/path/to/grpcurl.
#
# grpcurl is the real gRPC client whose admin traffic scripts/record-headscale-trace.sh
# captures (Headscale's HTTP/2 admin API is gRPC over h2c, docs/headscale.md).
#
# Same pinned version list as scripts/install-headscale.sh: `go install pkg@version` reads
# `<proxy>/<module>/@v/list` for deprecations and retractions, and the module proxy reachable
# from our machines refuses version lists (403) while serving exact versions. A local file://
# proxy in front of the real one answers that one list with the requested version only;
# every other request falls through to the real proxy and is checked against sum.golang.org.
#
# Environment: GO (go binary; default `go` in PATH, else /usr/local/go/bin/go),
# H2R_GO_INSTALL_TIMEOUT (seconds, default 900).
# Exit status: 0 built or present, 1 the build failed (its log is printed), 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
CACHE_BIN=$ROOT/.cache/bin
MODULE=github.com/fullstorydev/grpcurl
VERSION=v1.9.3
TIMEOUT=${H2R_GO_INSTALL_TIMEOUT:-900}

die() { echo "install-grpcurl.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

force=0
for a in "$@"; do
    case $a in
    -h | --help) usage; exit 0 ;;
    --force) force=1 ;;
    v[0-9]*.[0-9]*.[0-9]*) VERSION=$a ;;
    *) echo "install-grpcurl.sh: '$a' is not a release tag like v1.9.3 (see --help)" >&2; exit 2 ;;
    esac
done

dest=$CACHE_BIN/grpcurl
# grpcurl built by `go install` prints "grpcurl vX.Y.Z" (from BuildInfo) or "grpcurl dev build".
if [[ $force -eq 0 && -x $dest ]] && grep -qx "version=$VERSION" "$CACHE_BIN/grpcurl.txt" 2>/dev/null &&
    "$dest" -version >/dev/null 2>&1; then
    echo "install-grpcurl.sh: $VERSION already in $dest (skipped)" >&2
    echo "GRPCURL=$dest"
    exit 0
fi

GO=${GO:-}
if [[ -z $GO ]]; then
    GO=$(command -v go || true)
    [[ -n $GO ]] || GO=/usr/local/go/bin/go
fi
[[ -x $GO ]] || die "no Go toolchain (looked for 'go' in PATH and /usr/local/go/bin/go); set GO="
upstream_proxy=$("$GO" env GOPROXY)
[[ -n $upstream_proxy && $upstream_proxy != off ]] || die "GOPROXY is '$upstream_proxy'; a module proxy is needed"

mkdir -p "$CACHE_BIN"
work=$(mktemp -d "$CACHE_BIN/.build-grpcurl.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pins/$MODULE/@v" "$work/bin"
printf '%s\n' "$VERSION" >"$work/pins/$MODULE/@v/list"
echo "install-grpcurl.sh: building $MODULE/cmd/grpcurl@$VERSION (timeout ${TIMEOUT}s)" >&2
start=$(date +%s.%N)
set +e
GOBIN=$work/bin GOPROXY="file://$work/pins,$upstream_proxy" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    timeout "$TIMEOUT" "$GO" install "$MODULE/cmd/grpcurl@$VERSION" >"$work/build.log" 2>&1
brc=$?
set -e
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [[ $brc -ne 0 || ! -x $work/bin/grpcurl ]]; then
    echo "install-grpcurl.sh: $VERSION FAILED after ${secs}s (exit $brc; 124 = timeout); log:" >&2
    sed 's/^/    /' "$work/build.log" >&2
    exit 1
fi
mv -f "$work/bin/grpcurl" "$dest"
{
    echo "version=$VERSION"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$secs"
    echo "go=$("$GO" env GOVERSION)"
} >"$CACHE_BIN/grpcurl.txt"
echo "install-grpcurl.sh: $VERSION built in ${secs}s -> $dest" >&2
echo "GRPCURL=$dest"

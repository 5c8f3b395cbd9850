#!/usr/bin/env bash
# Build Jaeger v2 (the Collector-based all-in-one: OTLP in on 4317/4318, query API and UI on 16686,
# in-memory store by default) from the Go module proxy, into a cache OUTSIDE the repo:
#
#   ${OTEL_AGENT_EVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval}/jaeger-<version>/jaeger
#
# The last line on stdout is the binary's path (everything else goes to stderr), so callers can do
#   bin="$(bash scripts/build-jaeger.sh | tail -n 1)"
#
# Idempotent: when the binary is already there, nothing is built. Concurrent runs wait for each other.
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@<version>` fails (the module has replace
# directives), so the script builds it from a scratch module that requires Jaeger as a tool:
#   go mod init scratch && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@<version>
#   go build -o jaeger github.com/jaegertracing/jaeger/cmd/jaeger
# A cold build takes minutes (about 5 on a laptop).
#
# Options:
#   --force       rebuild even if the binary exists
#   --path-only   build nothing: print the binary's path and exit 0 if it exists, 1 if it does not
#   -h, --help    this text
#
# Environment:
#   OTEL_AGENT_EVAL_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval)
#   JAEGER_VERSION           Jaeger release (default v1.76.0, the Go module version of Jaeger v2.13)
#   GOMODCACHE, GOCACHE      Go's caches; when not set they go under the cache root (go/mod, go/build)
#   GO                       the go command (default: go)
set -euo pipefail

say() { echo "build-jaeger: $*" >&2; }
die() { echo "build-jaeger: error: $*" >&2; exit 1; }

force=0
path_only=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --path-only) path_only=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${JAEGER_VERSION:-v1.76.0}"
cache_root="${OTEL_AGENT_EVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval}"
dir="$cache_root/jaeger-$version"
bin="$dir/jaeger"

case "$dir/" in
    "$repo"/*) die "the cache ($dir) must be outside the repo ($repo): set OTEL_AGENT_EVAL_CACHE" ;;
esac

if [ "$path_only" = 1 ]; then
    echo "$bin"
    [ -x "$bin" ]
    exit $?
fi

if [ "$force" = 0 ] && [ -x "$bin" ]; then
    say "up to date ($version)"
    echo "$bin"
    exit 0
fi

GO="${GO:-go}"
command -v "$GO" >/dev/null 2>&1 || die "Go not found ('$GO' is not on PATH): install Go, or set GO=/path/to/go"

mkdir -p "$dir" || die "cannot create the cache folder $dir"

if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.lock"
    if ! flock -n 9; then
        say "another build of Jaeger $version is running; waiting for it"
        flock 9
    fi
    if [ "$force" = 0 ] && [ -x "$bin" ]; then
        say "built by another run ($version)"
        echo "$bin"
        exit 0
    fi
fi

export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
# The scratch module must not pick up a go.work from above the cache.
export GOWORK=off

start=$(date +%s)
say "go: $("$GO" version 2>/dev/null || echo unknown); GOPROXY=$("$GO" env GOPROXY 2>/dev/null || echo '?')"
say "building github.com/jaegertracing/jaeger/cmd/jaeger@$version into $dir (a cold build takes minutes)"

src="$dir/src"
log="$dir/build.log"
rm -rf "$src"
mkdir -p "$src"
set +e
(
    cd "$src" &&
        "$GO" mod init scratch &&
        "$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version" &&
        "$GO" build -ldflags "-s -w" -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
) 2>&1 | tee "$log" >&2
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] || [ ! -x "$bin.tmp" ]; then
    if grep -qE 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake' "$log"; then
        say "the Go module proxy could not be reached (GOPROXY=$("$GO" env GOPROXY)); check the network or GOPROXY"
    elif grep -qE '403 Forbidden|404 Not Found|not available|unknown revision' "$log"; then
        say "the Go module proxy does not serve a module version Jaeger $version needs (see the lines above)"
    fi
    die "building Jaeger failed (exit $status); the full log is in $log"
fi

"$bin.tmp" version >&2 || die "the built binary does not run: $bin.tmp"
mv -f "$bin.tmp" "$bin"
rm -rf "$src"

end=$(date +%s)
say "built in $((end - start)) s: $bin"
echo "$bin"

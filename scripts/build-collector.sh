#!/usr/bin/env bash
# Build the project's OpenTelemetry Collector (otelcol-agent-eval) with the OpenTelemetry Collector
# Builder (ocb) from collector-config/builder-config.yaml, into a cache OUTSIDE the repo:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval/otelcol-<hash of the manifest>/otelcol-agent-eval
#
# The last line on stdout is the binary's path (everything else goes to stderr), so callers can do
#   bin="$(bash scripts/build-collector.sh | tail -n 1)"
#
# Idempotent: when the binary for the same manifest is already there, nothing is built. A changed
# manifest gets a new folder. Concurrent runs for the same manifest wait for each other (flock).
#
# Everything comes from the Go module proxy (GOPROXY as configured on the machine): the builder is
# installed with `go install go.opentelemetry.io/collector/cmd/builder@<version>` (the version is on
# the `# builder:` line of the manifest), then ocb fetches the components and runs `go build`.
#
# Options:
#   --force       rebuild even if the binary exists
#   --path-only   build nothing: print the binary's path and exit 0 if it exists, 1 if it does not
#   -h, --help    this text
#
# Environment:
#   OTEL_AGENT_EVAL_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval)
#   OTELCOL_BUILDER_CONFIG   manifest (default collector-config/builder-config.yaml)
#   GOMODCACHE, GOCACHE      Go's module and build caches; when not set in the environment they go under
#                            the cache root (go/mod, go/build) so the whole build is in one deletable place
#   GO                       the go command (default: go)
set -euo pipefail

say() { echo "build-collector: $*" >&2; }
die() { echo "build-collector: error: $*" >&2; exit 1; }

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
manifest="${OTELCOL_BUILDER_CONFIG:-$repo/collector-config/builder-config.yaml}"
[ -f "$manifest" ] || die "builder manifest not found: $manifest"
manifest="$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")"

cache_root="${OTEL_AGENT_EVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-agent-eval}"
name=otelcol-agent-eval

if command -v sha256sum >/dev/null 2>&1; then
    hash="$(sha256sum "$manifest" | cut -c1-12)"
elif command -v shasum >/dev/null 2>&1; then
    hash="$(shasum -a 256 "$manifest" | cut -c1-12)"
else
    die "neither sha256sum nor shasum found (needed to key the cache on the manifest)"
fi
dir="$cache_root/otelcol-$hash"
bin="$dir/$name"

case "$dir/" in
    "$repo"/*) die "the cache ($dir) must be outside the repo ($repo): set OTEL_AGENT_EVAL_CACHE" ;;
esac

if [ "$path_only" = 1 ]; then
    echo "$bin"
    [ -x "$bin" ]
    exit $?
fi

if [ "$force" = 0 ] && [ -x "$bin" ]; then
    say "up to date (manifest $hash)"
    echo "$bin"
    exit 0
fi

GO="${GO:-go}"
command -v "$GO" >/dev/null 2>&1 || die "Go not found ('$GO' is not on PATH): install Go, or set GO=/path/to/go"

builder_version="$(sed -n 's|^#[[:space:]]*builder:[[:space:]]*go.opentelemetry.io/collector/cmd/builder[[:space:]]\{1,\}\(v[0-9][^[:space:]]*\).*|\1|p' "$manifest" | head -n 1)"
[ -n "$builder_version" ] || die "no '# builder: go.opentelemetry.io/collector/cmd/builder vX.Y.Z' line in $manifest"

mkdir -p "$dir" || die "cannot create the cache folder $dir"

# One build per manifest at a time: a second caller waits, then finds the binary.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.lock"
    if ! flock -n 9; then
        say "another build of this manifest is running; waiting for it"
        flock 9
    fi
    if [ "$force" = 0 ] && [ -x "$bin" ]; then
        say "built by another run (manifest $hash)"
        echo "$bin"
        exit 0
    fi
fi

# Go's caches: under the cache root unless the caller set them. -modcacherw keeps the module cache
# deletable with a plain `rm -rf`.
export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"

start=$(date +%s)
say "go: $("$GO" version 2>/dev/null || echo unknown); GOPROXY=$("$GO" env GOPROXY 2>/dev/null || echo '?')"
say "manifest: $manifest (hash $hash)"
say "cache: $dir"

# 1. The builder, installed once per version.
builder_dir="$cache_root/tools/builder-$builder_version"
builder="$builder_dir/builder"
if [ ! -x "$builder" ]; then
    say "installing go.opentelemetry.io/collector/cmd/builder@$builder_version into $builder_dir"
    mkdir -p "$builder_dir"
    if ! GOBIN="$builder_dir" "$GO" install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2; then
        die "could not install the builder $builder_version from the Go module proxy (GOPROXY=$("$GO" env GOPROXY)); check that the proxy is reachable and serves that version"
    fi
fi

# 2. The effective manifest: the repo's, with dist.output_path pointing into the cache.
src="$dir/src"
effective="$dir/builder-config.yaml"
rm -rf "$src"
awk -v out="$src" '
    /^[^[:space:]#]/ { in_dist = ($0 ~ /^dist:/) }
    in_dist && /^[[:space:]]+output_path:/ { match($0, /^[[:space:]]+/); print substr($0, 1, RLENGTH) "output_path: " out; done = 1; next }
    { print }
    END { if (!done) exit 3 }
' "$manifest" >"$effective" || die "no dist.output_path in $manifest (the script rewrites it to point into the cache)"

# 3. Generate, fetch modules, compile. -s -w drops the symbol table and DWARF (a much smaller binary).
log="$dir/build.log"
say "building with ocb $builder_version (a cold build downloads a few hundred modules and compiles them: minutes)"
set +e
"$builder" --config "$effective" --ldflags "-s -w" 2>&1 | tee "$log" >&2
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] || [ ! -x "$src/$name" ]; then
    if grep -qE '403 Forbidden|404 Not Found|not available|unknown revision' "$log"; then
        say "the Go module proxy does not serve a module version that this manifest needs (see the lines above);"
        say "move all components to a release the proxy serves, or pin the missing dependency with a"
        say "'replaces:' line in $manifest"
    elif grep -qE 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake' "$log"; then
        say "the Go module proxy could not be reached (GOPROXY=$("$GO" env GOPROXY)); check the network or GOPROXY"
    fi
    die "ocb failed (exit $status); the full log is in $log"
fi

# 4. Publish atomically, check that it runs, drop the generated sources' copy of the binary.
mv -f "$src/$name" "$bin.tmp"
"$bin.tmp" --version >&2 || die "the built binary does not run: $bin.tmp"
mv -f "$bin.tmp" "$bin"
cp "$manifest" "$dir/manifest.yaml"

end=$(date +%s)
say "built in $((end - start)) s: $bin"
echo "$bin"

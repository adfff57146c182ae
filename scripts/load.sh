#!/usr/bin/env bash
# HTTP load against the `hello` sample through the server and against a native
# axum handler answering the same in the same server, in one run; prints
# requests per second for each and their ratio.
#
# Usage: scripts/load.sh [seconds per run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"

if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet

data="$(mktemp -d)"
port=18080
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
MINIAPP_LOG=warn ./target/release/miniapp serve --samples --native-baseline \
    --listen "127.0.0.1:$port" --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done

rate() {
    # Warm up, then measure.
    wrk -t2 -c"$connections" -d2s "$1" >/dev/null
    wrk -t2 -c"$connections" -d"${duration}s" --latency "$1" | tee /dev/stderr |
        awk '/Requests\/sec/ {print $2}'
}

guest=$(rate "http://127.0.0.1:$port/apps/hello/bench/path?x=1")
native=$(rate "http://127.0.0.1:$port/native/hello/bench/path?x=1")
echo
echo "hello through a fresh wasm instance per call: $guest req/s"
echo "native axum handler, same server:            $native req/s"
awk -v g="$guest" -v n="$native" 'BEGIN { printf "ratio guest/native: %.2f\n", g / n }'

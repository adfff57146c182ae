#!/usr/bin/env bash
# HTTP load against the `hello` sample through the server and against a native
# axum handler answering the same in the same server, in one run; prints
# requests per second for each and their ratio.
#
# The two alternate, round after round, and the medians are reported: on a
# shared machine one run of each can be tens of percent apart for the same
# binary, and alternating spreads the machine's slow spells over both.
#
# Usage: scripts/load.sh [seconds per run, default 10] [connections, default 32]
#                        [rounds, default 5]
#
# MINIAPP_BIN=path runs that server binary instead of building
# target/release/miniapp: to compare two builds on one machine, alternately.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
rounds="${3:-5}"
for value in "$duration" "$connections" "$rounds"; do
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
        echo "usage: $0 [seconds per run] [connections] [rounds]: each a positive whole number, not '$value'" >&2
        exit 2
    fi
done

bin="${MINIAPP_BIN:-}"
if [[ -z $bin ]]; then
    cargo build --release --quiet
    bin=./target/release/miniapp
elif ! [[ -x $bin ]]; then
    echo "MINIAPP_BIN=$bin is not an executable file" >&2
    exit 2
fi

if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

data="$(mktemp -d)"
port=18080
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
MINIAPP_LOG=warn "$bin" serve --samples --native-baseline \
    --listen "127.0.0.1:$port" --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done

guest_url="http://127.0.0.1:$port/apps/hello/bench/path?x=1"
native_url="http://127.0.0.1:$port/native/hello/bench/path?x=1"
# Warm up both: caches, connections, the allocator's free lists.
wrk -t2 -c"$connections" -d2s "$guest_url" >/dev/null
wrk -t2 -c"$connections" -d2s "$native_url" >/dev/null

# Requests per second at $1; fails when any answer was not a success or a
# connection failed, so a rate of errors is never reported as a rate.
rate() {
    local out
    out=$(wrk -t2 -c"$connections" -d"${duration}s" "$1")
    if grep -Eq 'Non-2xx|Socket errors' <<<"$out"; then
        echo "load: $1 did not answer every request with a success:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

guests=() natives=() ratios=()
for round in $(seq "$rounds"); do
    guest=$(rate "$guest_url")
    native=$(rate "$native_url")
    ratio=$(awk -v g="$guest" -v n="$native" 'BEGIN { printf "%.2f", g / n }')
    echo "round $round: guest $guest req/s, native $native req/s, ratio $ratio"
    guests+=("$guest") natives+=("$native") ratios+=("$ratio")
done

echo
echo "median of $rounds rounds of ${duration}s, $connections connections:"
echo "hello through a fresh wasm instance per call: $(printf '%s\n' "${guests[@]}" | median) req/s"
echo "native axum handler, same server:            $(printf '%s\n' "${natives[@]}" | median) req/s"
echo "ratio guest/native:                          $(printf '%s\n' "${ratios[@]}" | median)"

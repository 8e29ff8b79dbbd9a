#!/usr/bin/env bash
# Instructions per record of one shard (perf/RESULTS.md's callgrind figures):
# `sluice run --shards 1` under `valgrind --tool=callgrind`, fed by
# `sluice gen --shape standard` (4 connections), delivering json to nghttpd
# (HTTP/2's default 64 KiB windows unless NGHTTPD_ARGS says otherwise).
# Counting starts after a 5,000-record warm-up and stops once RECORDS are
# acked; the per-crate split (codec, shards, h2, glommio, jemalloc, memcpy,
# other) and the top functions outside the codec come from
# scripts/callgrind-sum.py. Unlike time on a shared VM, the count repeats to
# within a few instructions.
# Usage: scripts/callgrind-shard.sh [BIN] [RECORDS] [TOP]
# Env: BATCH [100; 0 = one record per request], INF [1024 in flight per gen
#      connection], CONNS [4 connections per endpoint], ORDERED [0; 1 =
#      record-ordering on the route], NGHTTPD_ARGS, OUT [the callgrind
#      file; default in the work dir, removed at exit].
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-$PWD/target/release/sluice}
RECORDS=${2:-50000}
TOP=${3:-15}
. scripts/bench-lib.sh
workdir callgrind
OUT=${OUT:-$W/shard.cg}
PP=$(free_port)
mkdir -p "$W/docroot" && echo ok >"$W/docroot/in"
# shellcheck disable=SC2086
taskset -c "$LOADCPU" nghttpd --no-tls ${NGHTTPD_ARGS:-} -d "$W/docroot" "$PP" >"$W/peer.log" 2>&1 &
PIDS+=($!)
XDR=$(free_port)
cat >"$W/sluice.yml" <<EOT
service: {port: $XDR, address: 127.0.0.1, max-concurrent-records: 32768}
destinations:
  dest: {urls: ["http://127.0.0.1:$PP/in"], protocol: HTTP_2, max-connections-per-endpoint: ${CONNS:-4}}
routing: {mode: static-multi-destination, destinations: [dest]}
format: {mode: json}
$([ "${BATCH:-100}" = 0 ] || echo "batching: {max-records: ${BATCH:-100}}")
$([ "${ORDERED:-0}" = 0 ] || echo "record-ordering: {lut-cache-ttl-seconds: 30}")
logging: {ticker-interval: 0}
EOT
valgrind --tool=callgrind --callgrind-out-file="$OUT" --collect-atstart=yes --separate-threads=no \
  "$BIN" run --config "$W/sluice.yml" --shards 1 --cores 0 >"$W/sluice.log" 2>&1 &
C=$!
PIDS+=($C)
for _ in $(seq 1 600); do grep -q "listening on" "$W/sluice.log" 2>/dev/null && break; sleep 0.1; done
gen() {
  taskset -c "$LOADCPU" "$BIN" gen --target "127.0.0.1:$XDR" --shape standard --quiet --json \
    --records "$1" --rate max --connections 4 --in-flight "${INF:-1024}" >"$2" 2>"$2.log"
}
gen 5000 "$W/warm.json"
sleep 1
callgrind_control -z "$C" >/dev/null
gen "$RECORDS" "$W/run.json"
callgrind_control -d "$C" >/dev/null
acked=$(jget "$W/run.json" acked)
echo "acked $acked of $RECORDS"
kill -INT "$C"
sleep 3
python3 scripts/callgrind-sum.py "$OUT.1" "$acked" "$TOP"

#!/usr/bin/env bash
# Overload probe (a measurement, not a test): one unbatched shard delivering
# h2c to nghttpd while `sluice gen` offers RATE records/s in open loop with
# IN_FLIGHT records in flight per connection (4 connections) for SECONDS.
# Prints gen's acked rate and p50, sluice's CPU per acked record, and
# sluice's delivery counters (retries, timeouts, queue-full), so that a
# shard that slows down as records pile up shows as a falling acked rate at
# 100 % CPU. BIN and BASE (another sluice binary) alternate RUNS times.
# Usage: scripts/probe-overload.sh [RUNS]   (default 1)
# Env: RATE [95200], IN_FLIGHT [1024], SECONDS_ [5], BIN, BASE.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RUNS=${1:-1}
RATE=${RATE:-95200}
IN_FLIGHT=${IN_FLIGHT:-1024}
SECS=${SECONDS_:-5}
BIN=${BIN:-$PWD/target/release/sluice}
workdir probe

PEER=$(free_port)
start_nghttpd "$PEER"

probe() { # BINARY LABEL
  local xdr manage c u0 u1
  xdr=$(free_port)
  manage=$(free_port)
  cat >"$W/sluice.yml" <<EOF
service:
  port: $xdr
  address: 127.0.0.1
  max-concurrent-records: 32768
  manage: {port: $manage, address: 127.0.0.1}
destinations:
  dest: {urls: ["http://127.0.0.1:$PEER/in"], protocol: HTTP_2, max-connections-per-endpoint: 4}
routing: {mode: static-multi-destination, destinations: [dest]}
format: {mode: json}
logging: {ticker-interval: 0}
EOF
  "$1" run --config "$W/sluice.yml" --shards 1 --cores 0 >"$W/sluice.log" 2>&1 &
  c=$!
  PIDS+=("$c")
  wait_line "$W/sluice.log" "listening on"
  u0=$(cpu_of "$c")
  taskset -c "$LOADCPU" "$BIN" gen --target "127.0.0.1:$xdr" --shape standard --quiet --json \
    --rate "$RATE" --duration "${SECS}s" --connections 4 --in-flight "$IN_FLIGHT" >"$W/gen.json" 2>"$W/gen.log"
  u1=$(cpu_of "$c")
  local counters
  counters=$(curl -s "http://127.0.0.1:$manage/metrics" |
    grep -E '^sluice_destination_(retries|timeouts|queue_full)_total' | sed -E 's/\{[^}]*\}//' | tr '\n' ' ')
  kill "$c" 2>/dev/null || true
  wait "$c" 2>/dev/null || true
  python3 - "$W/gen.json" "$2" "$u0" "$u1" "$counters" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu = float(sys.argv[4]) - float(sys.argv[3])
n = r["acked"]
print(f"{sys.argv[2]}: acked {n} ({r['acked_per_s']:.0f}/s), abandoned {r['abandoned']}, "
      f"un-acked at end {r['in_flight_at_end']}, p50 {r['latency_us']['p50'] / 1000:.1f} ms, "
      f"sluice {cpu:.2f} CPU s = {cpu * 1e6 / max(n, 1):.1f} us per record; {sys.argv[5]}")
PY
}

echo "== $RATE records/s offered, $IN_FLIGHT in flight per connection x 4, ${SECS} s"
for _ in $(seq 1 "$RUNS"); do
  probe "$BIN" new
  [ -z "${BASE:-}" ] || probe "$BASE" base
done

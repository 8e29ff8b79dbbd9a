#!/usr/bin/env bash
# Stall probe (a measurement, not a test): open-loop runs at a modest rate,
# where every record should be acked in about a millisecond, printing p50,
# p99, p99.9 and max of gen's ack latency per run. A run whose max sits near
# a timer period (gen's 200 ms read tick, a call-timeout) means an executor
# slept with work ready: vendor/glommio/SLUICE-PATCH.md, "An executor
# preempted before any task queue ran does not sleep", found this way.
# Two set-ups, each RUNS times (alternated with BASE when given):
#   acker   `sluice gen` against `sluice gen --acker` (the runtime alone:
#           gen and the acker both run glommio's executor, no connector);
#   sluice  gen -> `sluice run` (1 shard, CPU 0, h2c to nghttpd, 4
#           connections, a fresh connector each run) -> nghttpd.
# Usage: scripts/probe-stall.sh [RUNS]   (default 5)
# Env: RATE [36250: bench.sh's 25 % row], SECONDS_ [10], SETUPS ["acker
#      sluice"], BIN (default target/release/sluice), BASE (another binary).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RUNS=${1:-5}
RATE=${RATE:-36250}
SECS=${SECONDS_:-10}
BIN=${BIN:-$PWD/target/release/sluice}
workdir stall

PEER=$(free_port)
start_nghttpd "$PEER"

# gen_open BINARY TARGET OUT: one open-loop run, gen's summary to OUT.
gen_open() {
  taskset -c "$LOADCPU" "$1" gen --target "$2" --shape standard --quiet --json \
    --rate "$RATE" --duration "${SECS}s" --connections 4 --in-flight 1024 >"$3" 2>"$3.log"
}

# run SETUP BINARY LABEL
run() {
  local out="$W/$1.$3.json" port c
  port=$(free_port)
  if [ "$1" = acker ]; then
    taskset -c 0 "$2" gen --acker "127.0.0.1:$port" >"$W/acker.log" 2>&1 &
    c=$!
    PIDS+=("$c")
    sleep 0.3
  else
    cat >"$W/sluice.yml" <<EOF
service: {port: $port, address: 127.0.0.1, max-concurrent-records: 32768}
destinations:
  dest: {urls: ["http://127.0.0.1:$PEER/in"], protocol: HTTP_2, max-connections-per-endpoint: 4}
routing: {mode: static-multi-destination, destinations: [dest]}
format: {mode: json}
logging: {ticker-interval: 0}
EOF
    "$2" run --config "$W/sluice.yml" --shards 1 --cores 0 >"$W/sluice.log" 2>&1 &
    c=$!
    PIDS+=("$c")
    wait_line "$W/sluice.log" "listening on"
  fi
  gen_open "$2" "127.0.0.1:$port" "$out"
  kill "$c" 2>/dev/null || true
  wait "$c" 2>/dev/null || true
  python3 - "$out" "$1" "$3" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); l = d["latency_us"]
ms = lambda k: "%.2f" % (l[k] / 1000)
print("%-6s %-10s acked %8d  p50 %s  p99 %s  p99.9 %s  max %s ms" % (
    sys.argv[2], sys.argv[3], d["acked"], ms("p50"), ms("p99"), ms("p99.9"), ms("max")))
EOF
}

echo "== $RATE records/s open loop, ${SECS} s per run, gen on CPU $LOADCPU"
for i in $(seq 1 "$RUNS"); do
  for setup in ${SETUPS:-acker sluice}; do
    run "$setup" "$BIN" "${NEW_NAME:-new}"
    [ -z "${BASE:-}" ] || run "$setup" "$BASE" "${BASE_NAME:-base}"
  done
done

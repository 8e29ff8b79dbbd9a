#!/usr/bin/env bash
# Retry storm (not a test): a destination slower than `call-timeout` —
# `sluice sink --delay-ms 800-1400` against call-timeout 1000 ms, so most
# attempts time out although the sink still accepts them — fed by
# `sluice gen` (RECORDS at RATE, resending what is answered 11 as XDR
# does). Run twice: with the default retry budget (`retry.budget-percent`
# 20, `budget-min-per-second` 10) and with the budget lifted (both 100000).
# Prints, per run, gen's summary and the copies of each key the sink got
# (requests / unique keys): what the budget saves the destination.
# Usage: scripts/storm.sh   Env: RECORDS [4000], RATE [400], SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-4000}
RATE=${RATE:-400}
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bin sluice
BIN=$PWD/target/release/sluice
. scripts/bench-lib.sh
workdir storm

for mode in budget no-budget; do
  SP=$(free_port)
  "$BIN" sink --listen "127.0.0.1:$SP" --protocol h2c --json --quiet --delay-ms 800-1400 \
    --seed 7 --duration 600s >"$W/sink-$mode.json" 2>"$W/sink-$mode.log" &
  SPID=$!; PIDS+=("$SPID")
  wait_line "$W/sink-$mode.log" "listening on"
  XP=$(free_port)
  retry=""
  [ "$mode" = budget ] || retry=$'    retry:\n      budget-percent: 100000\n      budget-min-per-second: 100000\n'
  cat >"$W/$mode.yml" <<YML
service:
  address: 127.0.0.1
  port: $XP
  max-concurrent-records: 4096
destinations:
  sink:
    urls: ["http://127.0.0.1:$SP/in"]
    protocol: HTTP_2
    call-timeout: 1000
    max-connections-per-endpoint: 4
$retry
routing:
  mode: static-multi-destination
  destinations: [sink]
format:
  mode: json
logging:
  ticker-interval: 0
YML
  "$BIN" run --config "$W/$mode.yml" --shards 1 >"$W/sluice-$mode.log" 2>&1 &
  CPID=$!; PIDS+=("$CPID")
  wait_line "$W/sluice-$mode.log" "listening on"
  "$BIN" gen --target "127.0.0.1:$XP" --quiet --json --records "$RECORDS" --rate "$RATE" \
    --connections 4 --in-flight 1024 --key-space 100000000000 --grace 60s >"$W/gen-$mode.json" 2>"$W/gen-$mode.log"
  sleep 2  # attempts sluice gave up on may still be inside the sink's delay
  kill -TERM "$CPID"; wait "$CPID" 2>/dev/null || true
  kill -INT "$SPID"; wait "$SPID" 2>/dev/null || true
  python3 - "$mode" "$W/gen-$mode.json" "$W/sink-$mode.json" <<'PY'
import json, sys
mode, g, s = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"== {mode}: gen records {g['records']} acked {g['acked']} resent {g['resent']['total']} "
      f"p99 {g['latency_us']['p99'] / 1000:.0f} ms; sink requests {s['requests']} unique keys "
      f"{s['unique_keys']} duplicates {s['duplicates']}: {s['records'] / max(1, s['unique_keys']):.2f} copies per key")
PY
done

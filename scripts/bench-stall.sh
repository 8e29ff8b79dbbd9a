#!/usr/bin/env bash
# Memory under a stalled destination, over a long stall (BENCHMARKS.md §4):
# sluice on one shard (CPU 0), `max-concurrent-records: 32768`, HTTP/2 to a
# `sluice sink --stall-after 0` that never answers; `sluice gen` pushes 50 k
# records/s for SECONDS [60] (XDR-like: it resends what times out). sluice's
# VmRSS is sampled every STEP [2] s. Printed and written to perf/RESULTS.md:
# the samples, the peak, the growth from the first sample after WARMUP [6] s
# to the last, and the peak of the last third against the peak of the middle
# third (a leak keeps climbing; a bounded working set levels off).
# Usage: scripts/bench-stall.sh   Env: SECONDS_STALLED, STEP, WARMUP, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
STALLED=${SECONDS_STALLED:-60}
STEP=${STEP:-2}
WARMUP=${WARMUP:-6}
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bin sluice
BIN=$PWD/target/release/sluice
workdir stall

SINK_PORT=$(free_port); XDR=$(free_port)
taskset -c "$LOADCPU" "$BIN" sink --listen "127.0.0.1:$SINK_PORT" --protocol h2c --stall-after 0 \
  --duration "$((STALLED + 30))s" --quiet >/dev/null 2>"$W/sink.log" &
PIDS+=($!)
wait_line "$W/sink.log" "listening"
cat >"$W/stall.yml" <<EOF
service:
  port: $XDR
  address: 127.0.0.1
  max-concurrent-records: 32768
destinations:
  dest:
    urls: ["http://127.0.0.1:$SINK_PORT/ingest"]
    protocol: HTTP_2
    max-connections-per-endpoint: 4
routing:
  mode: static-multi-destination
  destinations: [dest]
format:
  mode: json
logging:
  ticker-interval: 0
EOF
"$BIN" run --config "$W/stall.yml" --cores 0 >"$W/run.log" 2>&1 &
CPID=$!; PIDS+=($CPID)
wait_line "$W/run.log" "listening on"
rss_before=$(awk '/VmRSS/ { print $2 }' "/proc/$CPID/status")
taskset -c "$LOADCPU" "$BIN" gen --target "127.0.0.1:$XDR" --shape standard --quiet --json \
  --rate 50000 --duration "${STALLED}s" --connections 4 --in-flight 16384 --grace 1s \
  >"$W/gen.json" 2>"$W/gen.log" &
GENPID=$!; PIDS+=($GENPID)
rss=()
for _ in $(seq 1 $((STALLED / STEP))); do
  sleep "$STEP"
  rss+=("$(awk '/VmRSS/ { print $2 }' "/proc/$CPID/status")")
done
wait "$GENPID" 2>/dev/null || true

summary=$(python3 - "$STEP" "$WARMUP" "${rss[@]}" <<'PY'
import sys
step, warm = float(sys.argv[1]), float(sys.argv[2])
v = [int(x) for x in sys.argv[3:]]
first = v[int(warm / step) - 1]
third = len(v) // 3
mid, last = max(v[third:2 * third]), max(v[2 * third:])
print(f"{first} {v[-1]} {(v[-1] - first) * 100 / first:+.1f} {max(v)} {mid} {last} {(last - mid) * 100 / mid:+.1f}")
PY
)
read -r first lastv growth peak midpeak lastpeak tailgrowth <<<"$summary"
{
  echo "<!-- bench-stall.sh:begin -->"
  echo "### Memory over a long stall (scripts/bench-stall.sh)"
  echo
  echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $NCPU CPUs; $(date -u '+%Y-%m-%d %H:%M') UTC,"
  echo "commit $(git rev-parse --short HEAD). Command: \`scripts/bench-stall.sh\` (SECONDS_STALLED=$STALLED, STEP=$STEP):"
  echo "sluice \`--cores 0\`, max-concurrent-records 32768, HTTP/2 to \`sluice sink --stall-after 0\`;"
  echo "gen \`--rate 50000 --connections 4 --in-flight 16384\` (resends what times out) for $STALLED s."
  echo
  echo "RSS before load $rss_before KiB; at ${WARMUP} s $first KiB; at ${STALLED} s $lastv KiB (**$growth %**); peak $peak KiB."
  echo "Peak of the last third $lastpeak KiB vs peak of the middle third $midpeak KiB: **$tailgrowth %**."
  echo
  echo "Samples every $STEP s (KiB): ${rss[*]}"
  echo "<!-- bench-stall.sh:end -->"
} >"$W/table.md"
cat "$W/table.md"
write_results bench-stall.sh "$W/table.md"

#!/usr/bin/env bash
# Batched delivery benchmark (issue #6 item 8): sluice on one shard pinned to
# CPU 0 (`--shards 1 --cores 0`), `batching: {max-records: 100}`, json
# records framed as NDJSON (the default batch framing), one HTTP/2
# destination: nghttpd (default) or `sluice sink` (PEER=sink), which, like
# `sluice gen`, runs on the other CPUs. Figure: sluice CPU (utime + stime
# from /proc/PID/stat) per acked record over RECORDS records at the maximum
# rate, median of RUNS runs. Target: >= 1 M records per CPU second
# (<= 1 µs per record). Then a `perf record` of one more run gives the top
# 10 symbols by self time. The result goes into perf/RESULTS.md between the
# bench-batched.sh markers (RESULTS=0: print only).
# Usage: scripts/bench-batched.sh [RUNS]   (default 3)
# Env: RECORDS [1000000], PEER [nghttpd|sink], PERF=0 (no perf record),
#      SKIP_BUILD=1, RESULTS=0, BIN (the sluice binary to measure, e.g. a
#      baseline copy; default target/release/sluice), NGHTTPD_ARGS (extra
#      nghttpd options, e.g. "-W 24 -w 20" for larger flow-control windows
#      than HTTP/2's default 64 KiB).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-${RUNS:-3}}
RECORDS=${RECORDS:-1000000}
PEER=${PEER:-nghttpd}
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bin sluice
BIN=${BIN:-$PWD/target/release/sluice}
W=$(mktemp -d /tmp/sluice-batched.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. scripts/bench-lib.sh

# --- the destination ----------------------------------------------------------------
PEER_PORT=$(free_port)
case "$PEER" in
  nghttpd)
    mkdir -p "$W/docroot" && echo ok >"$W/docroot/in"
    taskset -c "$LOADCPU" nghttpd --no-tls ${NGHTTPD_ARGS:-} -d "$W/docroot" "$PEER_PORT" >"$W/peer.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$PEER_PORT/in" && break; sleep 0.1; done
    ;;
  sink)
    taskset -c "$LOADCPU" "$BIN" sink --listen "127.0.0.1:$PEER_PORT" --protocol h2c --quiet >"$W/peer.log" 2>&1 &
    PIDS+=($!)
    wait_line "$W/peer.log" "listening on"
    ;;
  *) echo "bench-batched: PEER must be nghttpd or sink, not '$PEER'" >&2; exit 2 ;;
esac

# --- the connector ------------------------------------------------------------------
start_connector() {
  XDR=$(free_port)
  cat >"$W/sluice.yml" <<EOF
service:
  port: $XDR
  address: 127.0.0.1
  max-concurrent-records: 32768
destinations:
  dest:
    urls: ["http://127.0.0.1:$PEER_PORT/in"]
    protocol: HTTP_2
    max-connections-per-endpoint: 4
routing:
  mode: static-multi-destination
  destinations: [dest]
format:
  mode: json
batching:
  max-records: 100
logging:
  ticker-interval: 0
EOF
  "$BIN" run --config "$W/sluice.yml" --shards 1 --cores 0 >"$W/sluice.log" 2>&1 &
  CPID=$!
  PIDS+=("$CPID")
  wait_line "$W/sluice.log" "listening on"
}
stop_connector() { kill -TERM "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; }
gen_run() { # OUT RECORDS
  taskset -c "$LOADCPU" "$BIN" gen --target "127.0.0.1:$XDR" --shape standard --quiet --json \
    --records "$2" --rate max --connections 4 --in-flight 1024 >"$1" 2>"$1.log"
}

us=() rates=()
for i in $(seq 1 "$RUNS"); do
  start_connector
  gen_run "$W/warm.json" 50000
  before=$(cpu_of "$CPID")
  gen_run "$W/run$i.json" "$RECORDS"
  after=$(cpu_of "$CPID")
  stop_connector
  acked=$(jget "$W/run$i.json" acked)
  [ "$acked" = "$RECORDS" ] || { echo "bench-batched: run $i acked $acked of $RECORDS" >&2; exit 1; }
  u=$(python3 -c "print('%.3f' % (($after - $before) * 1e6 / $acked))")
  r=$(printf '%.0f' "$(jget "$W/run$i.json" acked_per_s)")
  us+=("$u"); rates+=("$r")
  echo "== run $i/$RUNS: $u µs CPU per record, $r acked/s"
done
MED=$(median "${us[@]}")
MEDRATE=$(printf '%.0f' "$(median "${rates[@]}")")
MREC=$(python3 -c "print('%.2f' % (1 / $MED))")
MET=$(python3 -c "print('met' if $MED <= 1.0 else 'NOT met')")

TOP=""
if [ "${PERF:-1}" != 0 ] && command -v perf >/dev/null; then
  start_connector
  gen_run "$W/warm.json" 50000
  gen_run "$W/perf.gen.json" "$RECORDS" &
  G=$!
  sleep 1
  perf record -F 999 -g -p "$CPID" -o "$W/perf.data" -- sleep 5 >/dev/null 2>&1 || true
  wait "$G" || true
  stop_connector
  TOP=$(perf report -i "$W/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -10 | sed -E 's/^ +//; s/[ -]+$//' || true)
fi

{
  echo "<!-- bench-batched.sh:begin -->"
  echo "## Batched delivery (scripts/bench-batched.sh)"
  echo
  echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $NCPU CPUs, shared with other"
  echo "engineers' builds; $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)."
  echo "Command: \`scripts/bench-batched.sh $RUNS\` (RECORDS=$RECORDS, PEER=$PEER${NGHTTPD_ARGS:+, NGHTTPD_ARGS=\"$NGHTTPD_ARGS\"}). sluice \`--shards 1 --cores 0\`,"
  echo "\`batching: {max-records: 100}\` (batch-interval 100 ms default), json, NDJSON framing, HTTP/2 to $PEER;"
  echo "\`sluice gen --shape standard --rate max --connections 4 --in-flight 1024\` and $PEER on CPU $LOADCPU."
  echo "sluice CPU = utime + stime from /proc/PID/stat around the measured run (after a 50 000-record warm-up)."
  echo
  echo "| run | sluice µs CPU / acked record | gen acked/s |"
  echo "|---|---|---|"
  for i in $(seq 1 "$RUNS"); do echo "| $i | ${us[$((i - 1))]} | ${rates[$((i - 1))]} |"; done
  echo "| **median** | **$MED** ($(spread "${us[@]}")) = $MREC M records per CPU second | $MEDRATE |"
  echo
  echo "Target ≥ 1 M records per CPU second (≤ 1 µs per record): **$MET**."
  if [ -n "$TOP" ]; then
    echo
    echo "Where sluice's time goes (\`perf record -F 999 -g -p PID -- sleep 5\` during one more run;"
    echo "\`perf report --no-children --sort symbol\`, top 10 by self time):"
    echo
    echo '```'
    echo "$TOP"
    echo '```'
  fi
  echo "<!-- bench-batched.sh:end -->"
} >"$W/table.md"
cat "$W/table.md"
if [ "${RESULTS:-1}" != 0 ]; then
  write_results bench-batched.sh "$W/table.md"
  echo "== written to perf/RESULTS.md"
fi

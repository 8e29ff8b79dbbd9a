#!/usr/bin/env bash
# Batched delivery benchmark (issue #6 item 8): sluice on one shard pinned to
# CPU 0 (`--shards 1 --cores 0`), `batching: {max-records: 100}`, json
# records framed as NDJSON (the default batch framing), one HTTP/2
# destination. Figure: sluice CPU (utime + stime from /proc/PID/stat) per
# acked record over RECORDS records at the maximum rate, median of RUNS runs.
# Target: >= 1 M records per CPU second (<= 1 µs per record).
#
# Peers (PEERS, all measured in one sitting, runs alternating between them so
# that the machine's noise falls on each alike), run with `sluice gen` on the
# other CPUs:
#   nghttpd        nghttpd with HTTP/2's default 64 KiB flow-control windows
#                  (every ~32 KiB of a 73 KiB batch waits for a WINDOW_UPDATE)
#   nghttpd-large  nghttpd -W 24 -w 20: 16 MiB connection / 1 MiB stream
#                  windows, as Go's and Envoy's HTTP/2 servers advertise
#   nginx          nginx over HTTP/1.1 (`return 200`, the body read and
#                  dropped): how Elasticsearch, Splunk HEC and most serverless
#                  endpoints are reached
#   sink           `sluice sink --protocol h2c`
# CONNECTIONS (a list, default "1 4"): max-connections-per-endpoint, each
# measured in turn (1 is the option's default, as in ESP). A peer that
# advertises HTTP/2's default 64 KiB windows lets 64 KiB per connection be
# unacknowledged: with one connection the shard waits for a WINDOW_UPDATE
# about every 32 KiB; with 4, about 3.5 of the shard's ~40 batches in flight
# are on the wire (perf/RESULTS.md).
# PLACEMENTS (a list, default "apart polled shared", or "apart shared" where
# polled cannot be set up): where gen and the peers run.
#   apart   on the other CPUs (CPU 1-), as BENCHMARKS.md pins the load tools
#   shared  on sluice's CPU 0, time-sharing it: every wake is then a local
#           one. On this VM a wake of a process asleep on the other CPU
#           costs the waker ~26 µs (scripts/wake-cost.sh); "shared" measures
#           the same work without that cost, so the two placements side by
#           side split sluice's own CPU per record from what cross-CPU wakes
#           add (the wake count is about the same in both: the counted pass).
#   polled  as apart, with the guest's idle CPUs polling for POLL_NS
#           (default 200000) before they halt (cpuidle-haltpoll's
#           guest_halt_poll_ns, which this VM's kernel command line sets to
#           0; restored at exit). A wake of a polling CPU needs no IPI to a
#           halted vCPU: it costs the waker 3-5 µs instead of ~26
#           (wake-cost.sh measures both). So this measures sluice apart from
#           its peers, as BENCHMARKS.md asks, without the VM's price for
#           waking a halted vCPU. Needs root and /sys/module/haltpoll;
#           without them the placement is refused.
# BASE=<another sluice binary> (BASE_NAME, NEW_NAME: their labels) adds a row
# per peer for it, alternated with
# BIN run by run (a side-by-side comparison: "ratio" column).
# Then a `perf record` of one more run (BIN, the first peer) gives the top 10
# symbols by self time. The result goes into perf/RESULTS.md between the
# bench-batched.sh markers (RESULTS=0: print only).
# Then one more run per row under `perf stat` counts sluice's wakes of other
# processes and its own context switches per 1,000 records (COUNT=0: not).
# Usage: scripts/bench-batched.sh [RUNS]   (default 3)
# Env: RECORDS [1000000], CONNECTIONS ["1 4"], PLACEMENTS ["apart polled shared"], POLL_NS [200000], PEERS ["nghttpd nghttpd-large nginx"], BIN (the sluice
#      binary measured; default target/release/sluice), BASE, PERF=0 (no perf
#      record), COUNT=0 (no counted runs), SKIP_BUILD=1, RESULTS=0.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-${RUNS:-3}}
RECORDS=${RECORDS:-1000000}
PEERS=${PEERS:-nghttpd nghttpd-large nginx}
CONNECTIONS=${CONNECTIONS:-1 4}
HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -w "$HALTPOLL" ]; then PLACEMENTS=${PLACEMENTS:-apart polled shared}; else PLACEMENTS=${PLACEMENTS:-apart shared}; fi
for pl in $PLACEMENTS; do
  case "$pl" in apart | shared | polled) ;; *) echo "bench-batched: PLACEMENTS holds apart, shared or polled, not '$pl'" >&2; exit 2 ;; esac
done
POLL_NS=${POLL_NS:-200000}
if [[ " $PLACEMENTS " == *" polled "* ]] && ! [ -w "$HALTPOLL" ]; then
  echo "bench-batched: the polled placement needs a writable $HALTPOLL (root, cpuidle-haltpoll)" >&2
  exit 2
fi
HALTPOLL0=$(cat "$HALTPOLL" 2>/dev/null || true)
[[ " $PLACEMENTS " != *" polled "* ]] ||
  echo "bench-batched: the polled rows set $HALTPOLL to $POLL_NS while they run (now $HALTPOLL0; put back at exit)" >&2
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bin sluice
BIN=${BIN:-$PWD/target/release/sluice}
NEW_NAME=${NEW_NAME:-$(git rev-parse --short HEAD)}
BASE_NAME=${BASE_NAME:-$(basename "${BASE:-base}")}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
. scripts/bench-lib.sh
workdir batched
# The EXIT trap also puts the guest's idle polling back as it was.
trap 'cleanup; [ -z "$HALTPOLL0" ] || echo "$HALTPOLL0" >"$HALTPOLL" 2>/dev/null || true' EXIT

# --- the destinations ------------------------------------------------------------
declare -A PORT PROTO PEERPID
mkdir -p "$W/docroot" && echo ok >"$W/docroot/in"
for peer in $PEERS; do
  PORT[$peer]=$(free_port)
  PROTO[$peer]=HTTP_2
  case "$peer" in
    nghttpd | nghttpd-large)
      args=()
      [ "$peer" = nghttpd-large ] && args=(-W 24 -w 20)
      taskset -c "$LOADCPU" nghttpd --no-tls "${args[@]}" -d "$W/docroot" "${PORT[$peer]}" >"$W/$peer.log" 2>&1 &
      PIDS+=($!)
      PEERPID[$peer]=$!
      for _ in $(seq 1 100); do curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:${PORT[$peer]}/in" && break; sleep 0.1; done
      ;;
    nginx)
      PROTO[$peer]=HTTP_1_1
      start_nginx "${PORT[$peer]}"
      PEERPID[$peer]="${PIDS[-1]} $(pgrep -P "${PIDS[-1]}" | tr '\n' ' ')"
      ;;
    sink)
      taskset -c "$LOADCPU" "$BIN" sink --listen "127.0.0.1:${PORT[$peer]}" --protocol h2c --quiet >"$W/$peer.log" 2>&1 &
      PIDS+=($!)
      PEERPID[$peer]=$!
      wait_line "$W/$peer.log" "listening on"
      ;;
    *) echo "bench-batched: PEERS holds nghttpd, nghttpd-large, nginx or sink, not '$peer'" >&2; exit 2 ;;
  esac
done

# place PLACEMENT: gen (GENCPU) and every peer process, all threads, on the
# placement's CPUs, and the guest's idle polling as the placement wants it.
GENCPU=$LOADCPU
place() {
  local peer p
  GENCPU=$LOADCPU
  [ "$1" = shared ] && GENCPU=0
  if [ -n "$HALTPOLL0" ] && [ -w "$HALTPOLL" ]; then
    if [ "$1" = polled ]; then echo "$POLL_NS" >"$HALTPOLL"; else echo "$HALTPOLL0" >"$HALTPOLL"; fi
  fi
  for peer in $PEERS; do
    for p in ${PEERPID[$peer]}; do taskset -a -p -c "$GENCPU" "$p" >/dev/null; done
  done
}

# --- the connector ------------------------------------------------------------------
start_connector() { # BINARY PEER CONNECTIONS
  XDR=$(free_port)
  cat >"$W/sluice.yml" <<EOF
service:
  port: $XDR
  address: 127.0.0.1
  max-concurrent-records: 32768
destinations:
  dest:
    urls: ["http://127.0.0.1:${PORT[$2]}/in"]
    protocol: ${PROTO[$2]}
    max-connections-per-endpoint: $3
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
  "$1" run --config "$W/sluice.yml" --shards 1 --cores 0 >"$W/sluice.log" 2>&1 &
  CPID=$!
  PIDS+=("$CPID")
  wait_line "$W/sluice.log" "listening on"
}
stop_connector() { kill -TERM "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; }
gen_run() { # OUT RECORDS
  taskset -c "$GENCPU" "$BIN" gen --target "127.0.0.1:$XDR" --shape standard --quiet --json \
    --records "$2" --rate max --connections 4 --in-flight 1024 >"$1" 2>"$1.log"
}

# measure BINARY PEER CONNECTIONS PLACEMENT: one run; prints "µs-per-record acked/s".
measure() {
  place "$4"
  start_connector "$1" "$2" "$3"
  gen_run "$W/warm.json" 50000
  local before after acked
  before=$(cpu_of "$CPID")
  gen_run "$W/run.json" "$RECORDS"
  after=$(cpu_of "$CPID")
  stop_connector
  acked=$(jget "$W/run.json" acked)
  [ "$acked" = "$RECORDS" ] || { echo "bench-batched: $2 acked $acked of $RECORDS" >&2; exit 1; }
  python3 -c "print('%.3f %.0f' % (($after - $before) * 1e6 / $acked, $(jget "$W/run.json" acked_per_s)))"
}

SIDES=(new)
[ -n "${BASE:-}" ] && SIDES=(new base)
declare -A US RATES
for i in $(seq 1 "$RUNS"); do
  for peer in $PEERS; do
    for pl in $PLACEMENTS; do
      for conns in $CONNECTIONS; do
        for side in "${SIDES[@]}"; do
          bin=$BIN
          [ "$side" = base ] && bin=$BASE
          read -r u r < <(measure "$bin" "$peer" "$conns" "$pl")
          US[$side,$peer,$conns,$pl]="${US[$side,$peer,$conns,$pl]:-} $u"
          RATES[$side,$peer,$conns,$pl]="${RATES[$side,$peer,$conns,$pl]:-} $r"
          echo "== run $i/$RUNS, $peer, $conns connections, $pl, $side: $u µs CPU per record, $r acked/s"
        done
      done
    done
  done
done

# under_perf PEER CONNECTIONS PLACEMENT GEN_OUT PERF_ARGS…: one more run of
# BIN (after the warm-up) with `perf PERF_ARGS… -p PID` attached for its
# duration.
under_perf() {
  local peer=$1 conns=$2 out=$4
  place "$3"
  shift 4
  start_connector "$BIN" "$peer" "$conns"
  gen_run "$W/warm.json" 50000
  perf "$@" -p "$CPID" >/dev/null 2>&1 &
  local p=$!
  sleep 0.5
  gen_run "$out" "$RECORDS" || true
  kill -INT "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  stop_connector
}

# One more run per peer and connection count (BIN only, not timed) under
# `perf stat`: how often sluice wakes another process (sched_waking in its
# context: mostly the peer and gen, each asleep on the other CPU) and how
# often it sleeps itself (context switches), per 1,000 records. On a VM a
# wake of a sleeping process on another CPU costs the waker tens of µs
# (scripts/wake-cost.sh), which is why the peers' rows differ.
declare -A WAKES SLEEPS
if [ "${COUNT:-1}" != 0 ] && command -v perf >/dev/null; then
  for peer in $PEERS; do
    for pl in $PLACEMENTS; do
      for conns in $CONNECTIONS; do
        under_perf "$peer" "$conns" "$pl" "$W/count.json" stat -x, -e sched:sched_waking,context-switches -o "$W/count.csv"
        acked=$(jget "$W/count.json" acked)
        read -r WAKES[$peer,$conns,$pl] SLEEPS[$peer,$conns,$pl] < <(python3 - "$W/count.csv" "$acked" <<'PY'
import sys
n = {}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        n[f[2]] = float(f[0])
k = 1000 / max(float(sys.argv[2]), 1)
print("%.2f %.2f" % (n.get("sched:sched_waking", 0) * k, n.get("context-switches", 0) * k))
PY
        )
        echo "== counted, $peer, $conns connections, $pl: ${WAKES[$peer,$conns,$pl]} wakes, ${SLEEPS[$peer,$conns,$pl]} context switches per 1,000 records"
      done
    done
  done
fi

TOP=""
FIRST=${PEERS%% *}
FIRST_CONNS=${CONNECTIONS##* }
FIRST_PL=${PLACEMENTS%% *}
if [ "${PERF:-1}" != 0 ] && command -v perf >/dev/null; then
  under_perf "$FIRST" "$FIRST_CONNS" "$FIRST_PL" "$W/perf.gen.json" record -F 999 -g -o "$W/perf.data"
  TOP=$(perf report -i "$W/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -10 | sed -E 's/^ +//; s/[ -]+$//' || true)
fi

# on PLACEMENT: the table's "gen and peer" column.
on() {
  local c=$LOADCPU
  [ "${c%-*}" = "${c#*-}" ] && c=${c%-*}
  case "$1" in
    shared) echo "CPU 0 (shared)" ;;
    polled) echo "CPU $c, idle CPUs poll" ;;
    *) echo "CPU $c" ;;
  esac
}
row() { # SIDE PEER CONNECTIONS PLACEMENT LABEL -> a table row; sets MED
  local k=$1,$2,$3,$4
  # shellcheck disable=SC2086
  MED=$(median ${US[$k]})
  # shellcheck disable=SC2086
  local rate; rate=$(printf '%.0f' "$(median ${RATES[$k]})")
  local met; met=$(python3 -c "print('met' if $MED <= 1.0 else 'not met')")
  # shellcheck disable=SC2086
  echo "| $2 | $3 | $(on "$4") | $5 | $(echo ${US[$k]} | sed 's/ /, /g') | **$(printf '%.3f' "$MED")** = $(python3 -c "print('%.2f' % (1 / $MED))") M/CPU-s, $met | $rate |"
}
{
  echo "<!-- bench-batched.sh:begin -->"
  echo "## Batched delivery (scripts/bench-batched.sh)"
  echo
  echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $NCPU CPUs;"
  echo "$(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD), load average before: $LOAD0."
  echo "Command: \`scripts/bench-batched.sh $RUNS\` (RECORDS=$RECORDS, PEERS=\"$PEERS\", CONNECTIONS=\"$CONNECTIONS\", PLACEMENTS=\"$PLACEMENTS\"${BASE:+, BASE=$BASE_NAME}). sluice \`--shards 1 --cores 0\`,"
  echo "\`batching: {max-records: 100}\` (batch-interval 100 ms default), json, NDJSON framing, \`max-connections-per-endpoint\` as in the connections column (HTTP/2, or HTTP/1.1 to nginx);"
  echo "\`sluice gen --shape standard --rate max --connections 4 --in-flight 1024\` and the peers on the CPUs of the \"gen and peer\" column"
  echo "(CPU 0 shared: time-sharing sluice's CPU, so that waking them is never a cross-CPU wake; idle CPUs poll: haltpoll's guest_halt_poll_ns $POLL_NS instead of ${HALTPOLL0:-?}, so that a wake needs no IPI to a halted vCPU; see the script's header)."
  echo "sluice CPU = utime + stime from /proc/PID/stat around each run (after a 50 000-record warm-up);"
  echo "runs alternate between peers, placements, connection counts${BASE:+ and binaries}. nghttpd: 64 KiB HTTP/2 windows; nghttpd-large: \`-W 24 -w 20\`."
  echo
  echo "| peer | connections | gen and peer | binary | µs CPU / acked record, each run | median | gen acked/s (median) |"
  echo "|---|---|---|---|---|---|---|"
  for peer in $PEERS; do
    for pl in $PLACEMENTS; do
      for conns in $CONNECTIONS; do
        row new "$peer" "$conns" "$pl" "$NEW_NAME"
        NEWMED=$MED
        if [ -n "${BASE:-}" ]; then
          row base "$peer" "$conns" "$pl" "$BASE_NAME"
          echo "| $peer | $conns | $(on "$pl") | ratio | | **$(python3 -c "print('%.2f' % ($NEWMED / $MED))")×** | |"
        fi
      done
    done
  done
  echo
  echo "Target ≥ 1 M records per CPU second (≤ 1 µs per record), per peer in the median column."
  if [ -n "${WAKES[*]:-}" ]; then
    echo
    echo "Wakes and sleeps of sluice per 1,000 records (one more run of $NEW_NAME per row, not timed, under"
    echo "\`perf stat -e sched:sched_waking,context-switches -p PID\`; a wake is sluice waking another process, mostly the"
    echo "peer or gen, asleep on the other CPU in the apart rows; see wake-cost.sh for what one costs here):"
    echo
    echo "| peer | connections | gen and peer | wakes / 1k records | context switches / 1k records |"
    echo "|---|---|---|---|---|"
    for peer in $PEERS; do
      for pl in $PLACEMENTS; do
        for conns in $CONNECTIONS; do
          echo "| $peer | $conns | $(on "$pl") | ${WAKES[$peer,$conns,$pl]} | ${SLEEPS[$peer,$conns,$pl]} |"
        done
      done
    done
  fi
  if [ -n "$TOP" ]; then
    echo
    echo "Where sluice's time goes (\`perf record -F 999 -g -p PID\` over one more run of $RECORDS records"
    echo "against $FIRST with $FIRST_CONNS connections, gen and peer on $(on "$FIRST_PL"); \`perf report --no-children --sort symbol\`, top 10 by self time):"
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

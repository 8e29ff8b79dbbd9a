#!/usr/bin/env bash
# End-to-end benchmarks of ../shared/docs/BENCHMARKS.md §2–§5, side by side in
# one run, written to perf/RESULTS.md between the bench.sh markers:
#   - connector CPU per acked record (1 shard, h2c to nghttpd) / h2load CPU per
#     request on the same nghttpd with a body of the same size;
#   - the same for HTTP/1.1: connector → nginx / wrk → nginx;
#   - 2 shards against 1 (scaling); with a scrape every second and the ticker
#     on (control overhead); batched delivery (100 records per NDJSON request);
#   - latency at 25/50/80 % of the maximum rate;
#   - peak RSS with the destination stalled.
# Every load is on 127.0.0.1, bounded by a record count or a duration.
# Usage: scripts/bench.sh [RUNS]   (RUNS alternating runs per side, default 3)
# Env: RECORDS (records per CPU run, default 300000), SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null

RUNS=${1:-${RUNS:-3}}
RECORDS=${RECORDS:-300000}
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bin sluice
BIN=$PWD/target/release/sluice
. scripts/bench-lib.sh
workdir bench
# Runs a command to its end; prints its CPU seconds (user + sys, children included).
cpu_run() { python3 - "$@" <<'EOF'
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=open(os.environ.get("CPU_RUN_OUT", "/dev/null"), "w"), stderr=subprocess.STDOUT)
_, status, ru = os.wait4(p.pid, 0)
print(ru.ru_utime + ru.ru_stime)
sys.exit(os.waitstatus_to_exitcode(status))
EOF
}
# Medians to 3 significant digits, as the table prints them.
median3() { printf '%.3g' "$(median "$@")"; }

# --- peers -------------------------------------------------------------------
mkdir -p "$W/docroot" && echo ok >"$W/docroot/ingest"
NGHTTPD_PORT=$(free_port)
taskset -c "$LOADCPU" nghttpd --no-tls -d "$W/docroot" "$NGHTTPD_PORT" >/dev/null 2>&1 &
PIDS+=($!)
NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT"

# --- the connector -------------------------------------------------------------
# start_connector NAME PROTOCOL URL CORES [extra yaml]; sets CPID, XDR, MANAGE
start_connector() {
  local name=$1 proto=$2 url=$3 cores=$4 extra=${5:-}
  XDR=$(free_port); MANAGE=$(free_port)
  cat >"$W/$name.yml" <<EOF
service:
  port: $XDR
  address: 127.0.0.1
  manage: { address: 127.0.0.1, port: $MANAGE }
  max-concurrent-records: 32768
destinations:
  dest:
    urls: ["$url"]
    protocol: $proto
    max-connections-per-endpoint: 4
routing:
  mode: static-multi-destination
  destinations: [dest]
format:
  mode: json
logging:
  ticker-interval: ${TICKER:-0}
$extra
EOF
  "$BIN" run --config "$W/$name.yml" --cores "$cores" >"$W/$name.log" 2>&1 &
  CPID=$!
  PIDS+=($CPID)
  wait_line "$W/$name.log" "listening on"
}
stop_connector() { kill -TERM "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; }

# gen_run OUT [args…]: the generator on the load CPUs, JSON summary to OUT.
gen_run() {
  local out=$1; shift
  taskset -c "$LOADCPU" "$BIN" gen --target "127.0.0.1:$XDR" --shape standard --quiet --json "$@" >"$out"
}

# connector_cpu NAME PROTO URL CORES EXTRA: one run of RECORDS at max rate;
# prints "cpu_us_per_record acked_per_s"
connector_cpu() {
  start_connector "$1" "$2" "$3" "$4" "${5:-}"
  gen_run "$W/warm.json" --records 20000 --rate max --connections 4 --in-flight 256
  local before after
  local scraper=
  if [ "${SCRAPE:-}" = 1 ]; then
    ( while sleep 1; do curl -s "http://127.0.0.1:$MANAGE/metrics" >/dev/null || true; done ) &
    scraper=$!
  fi
  before=$(cpu_of "$CPID")
  gen_run "$W/$1.gen.json" --records "$RECORDS" --rate max --connections 4 --in-flight 256
  after=$(cpu_of "$CPID")
  [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
  stop_connector
  local acked rate
  acked=$(jget "$W/$1.gen.json" acked)
  rate=$(jget "$W/$1.gen.json" acked_per_s)
  python3 -c "print('%.4f %.0f' % (($after - $before) * 1e6 / $acked, $rate))"
}

# --- body size: what the connector sends for the standard record -------------------
SINK_PORT=$(free_port)
"$BIN" sink --listen "127.0.0.1:$SINK_PORT" --protocol h2c --json --expect 1000 >"$W/sink.json" 2>"$W/sink.log" &
SPID=$!; PIDS+=($SPID)
wait_line "$W/sink.log" "listening"
start_connector size HTTP_2 "http://127.0.0.1:$SINK_PORT/ingest" 0
gen_run "$W/size.gen.json" --records 1000 --rate max --key-space 1000000
wait "$SPID" || true
stop_connector
BODY=$(python3 -c "import json; d=json.load(open('$W/sink.json')); print(round(d['bytes']/d['requests']))")
head -c "$BODY" /dev/zero | tr '\0' 'x' >"$W/body"
echo "== standard record: $BODY bytes of JSON per request"

# --- §2: CPU per record, alternating with the load tool --------------------------
declare -A R
h2=() h2load=() h1=() wrk=() rates=() two=() ctl=() batch=()
cat >"$W/post.lua" <<EOF
wrk.method = "POST"
local f = io.open("$W/body", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
EOF
for i in $(seq 1 "$RUNS"); do
  echo "== run $i/$RUNS"
  read -r c r < <(connector_cpu h2c HTTP_2 "http://127.0.0.1:$NGHTTPD_PORT/ingest" 0)
  h2+=("$c"); rates+=("$r")
  cpu=$(CPU_RUN_OUT="$W/h2load.out" cpu_run taskset -c 0 h2load -t1 -c4 -m64 -n "$RECORDS" -d "$W/body" "http://127.0.0.1:$NGHTTPD_PORT/ingest")
  done_=$(awk '/^requests:/ { print $8 }' "$W/h2load.out")
  h2load+=("$(python3 -c "print('%.4f' % ($cpu * 1e6 / $done_))")")

  read -r c _ < <(connector_cpu h1 HTTP_1_1 "http://127.0.0.1:$NGINX_PORT/ingest" 0)
  h1+=("$c")
  cpu=$(CPU_RUN_OUT="$W/wrk.out" cpu_run taskset -c 0 wrk -t1 -c16 -d5s -s "$W/post.lua" "http://127.0.0.1:$NGINX_PORT/ingest")
  done_=$(awk '/requests in/ { print $1 }' "$W/wrk.out")
  wrk+=("$(python3 -c "print('%.4f' % ($cpu * 1e6 / $done_))")")

  # Control overhead: a scrape every second and the ticker each second.
  read -r c _ < <(SCRAPE=1 TICKER=1 connector_cpu ctl HTTP_2 "http://127.0.0.1:$NGHTTPD_PORT/ingest" 0)
  ctl+=("$c")

  if [ "$NCPU" -gt 1 ]; then
    read -r c _ < <(connector_cpu two HTTP_2 "http://127.0.0.1:$NGHTTPD_PORT/ingest" 0,1)
    two+=("$c")
  fi
  read -r c _ < <(connector_cpu batch HTTP_2 "http://127.0.0.1:$NGHTTPD_PORT/ingest" 0 \
    "$(printf 'batching:\n  enabled: true\n  max-records: 100\n  batch-interval: 20\n')")
  batch+=("$c")
done

# --- §3: latency at 25/50/80 % of the maximum rate (open loop, CO-corrected) ------
MAXRATE=$(median3 "${rates[@]}")
lat_rows=""
start_connector lat HTTP_2 "http://127.0.0.1:$NGHTTPD_PORT/ingest" 0
for pct in 25 50 80; do
  rate=$(python3 -c "print(int($MAXRATE * $pct / 100))")
  gen_run "$W/lat$pct.json" --rate "$rate" --duration 10s --connections 4 --in-flight 1024
  row=$(python3 - "$W/lat$pct.json" "$pct" "$rate" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); l = d["latency_us"]
print("| %s %% | %s | %d | %d | %d | %d | %d |" % (sys.argv[2], sys.argv[3], d["acked"], l["p50"], l["p99"], l.get("p99.9", 0), l["max"]))
PY
)
  lat_rows+="$row"$'\n'
done
stop_connector

# --- §4: peak RSS with the destination stalled --------------------------------------
STALL_PORT=$(free_port)
"$BIN" sink --listen "127.0.0.1:$STALL_PORT" --protocol h2c --stall-after 0 --duration 40s --quiet >/dev/null 2>"$W/stall-sink.log" &
STALLPID=$!; PIDS+=($STALLPID)
wait_line "$W/stall-sink.log" "listening"
start_connector stall HTTP_2 "http://127.0.0.1:$STALL_PORT/ingest" 0
rss_before=$(awk '/VmRSS/ { print $2 }' "/proc/$CPID/status")
( gen_run "$W/stall.gen.json" --rate 50000 --duration 20s --connections 4 --in-flight 16384 --grace 1s || true ) &
GENPID=$!
rss=()
for _ in $(seq 1 20); do sleep 1; rss+=("$(awk '/VmRSS/ { print $2 }' "/proc/$CPID/status")"); done
wait "$GENPID" || true
stop_connector
kill "$STALLPID" 2>/dev/null || true
rss_first=${rss[2]}; rss_last=${rss[-1]}
rss_growth=$(python3 -c "print('%+.1f' % (($rss_last - $rss_first) * 100 / $rss_first))")
rss_peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)

# --- the table ---------------------------------------------------------------------------
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
h2m=$(median3 "${h2[@]}"); h2lm=$(median3 "${h2load[@]}")
h1m=$(median3 "${h1[@]}"); wrkm=$(median3 "${wrk[@]}")
ctlm=$(median3 "${ctl[@]}"); batchm=$(median3 "${batch[@]}")
twom=${two:+$(median3 "${two[@]}")}
{
  echo "<!-- bench.sh:begin -->"
  echo "## End to end (scripts/bench.sh)"
  echo
  echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $NCPU CPUs; $(date -u +%Y-%m-%d)."
  echo "Command: \`scripts/bench.sh $RUNS\` (RECORDS=$RECORDS per CPU run, the standard record, $BODY-byte JSON body;"
  echo "connector pinned to CPU 0, generator/servers on CPU $LOADCPU; $RUNS alternating runs per side; median (spread))."
  echo
  echo "| figure | connector µs CPU / record | load tool µs CPU / request | ratio |"
  echo "|---|---|---|---|"
  echo "| h2c → nghttpd (1 record per request) vs h2load -t1 | $h2m ($(spread "${h2[@]}")) | $h2lm ($(spread "${h2load[@]}")) | **$(ratio "$h2m" "$h2lm")** |"
  echo "| HTTP/1.1 → nginx vs wrk -t1 | $h1m ($(spread "${h1[@]}")) | $wrkm ($(spread "${wrk[@]}")) | **$(ratio "$h1m" "$wrkm")** |"
  echo "| h2c with /metrics scraped every 1 s + ticker every 1 s | $ctlm ($(spread "${ctl[@]}")) | vs $h2m without | $(ratio "$ctlm" "$h2m") |"
  [ -z "$twom" ] || echo "| 2 shards (CPUs 0,1) vs 1 shard | $twom ($(spread "${two[@]}")) | vs $h2m | $(ratio "$twom" "$h2m") |"
  echo "| batched: 100 records per NDJSON request | $batchm ($(spread "${batch[@]}")) | = $(python3 -c "print('%.2f' % (1 / $batchm))") M records per CPU second | |"
  echo
  echo "Maximum rate (h2c, 1 shard, median): $(printf '%.0f' "$MAXRATE") records/s."
  echo
  echo "Latency, XDR send → ack, open loop at a fixed rate (µs):"
  echo
  echo "| load | rate/s | acked | p50 | p99 | p99.9 | max |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s' "$lat_rows"
  echo
  echo "Memory with the destination stalled (sink --stall-after 0, max-concurrent-records 32768, gen 50k/s for 20 s):"
  echo "RSS before load ${rss_before} KiB; at 3 s ${rss_first} KiB; at 20 s ${rss_last} KiB (${rss_growth} %); peak ${rss_peak} KiB."
  echo "<!-- bench.sh:end -->"
} >"$W/table.md"
cat "$W/table.md"
python3 - "$W/table.md" <<'PY'
import re, sys, os
table = open(sys.argv[1]).read().strip() + "\n"
path = "perf/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# sluice performance results\n"
pat = re.compile(r"<!-- bench.sh:begin -->.*?<!-- bench.sh:end -->\n?", re.S)
text = pat.sub(lambda m: table, text) if pat.search(text) else text.rstrip() + "\n\n" + table
open(path, "w").write(text)
PY
echo "== written to perf/RESULTS.md"

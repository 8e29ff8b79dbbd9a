#!/usr/bin/env bash
# Benchmarks of the perf tools themselves (not of the connector):
#  1. `sluice gen` alone against the bundled trivial acker: records/s on one core.
#  2. `h2load -t1` against `nghttpd` and against `sluice sink`, same body,
#     alternating: the sink must answer at least as many requests/s.
# Prints a Markdown section on stdout. Needs nghttp2-client, nghttp2-server.
# Usage: scripts/bench-perf-tools.sh [RUNS]   (SLUICE=path/to/sluice to override)
set -euo pipefail
RUNS=${1:-3}
SLUICE=${SLUICE:-target/release/sluice}
GEN_RECORDS=${GEN_RECORDS:-5000000}
H2_REQUESTS=${H2_REQUESTS:-300000}
NCPU=$(nproc)
CPU_A=0
CPU_B=$(( NCPU > 1 ? 1 : 0 ))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

command -v h2load >/dev/null || { echo "h2load missing (apt-get install nghttp2-client)" >&2; exit 2; }
command -v nghttpd >/dev/null || { echo "nghttpd missing (apt-get install nghttp2-server)" >&2; exit 2; }
[ -x "$SLUICE" ] || { echo "$SLUICE missing (cargo build --release)" >&2; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
wait_port() { # file with "listening on ADDR" → port
  for _ in $(seq 100); do grep -q 'listening on' "$1" 2>/dev/null && break; sleep 0.1; done
  grep -o 'listening on .*' "$1" | head -1 | sed 's/.*://'
}

# 1. generator against the trivial acker
taskset -c "$CPU_B" "$SLUICE" gen --acker 127.0.0.1:0 2>"$WORK/acker.err" &
PIDS+=($!)
APORT=$(wait_port "$WORK/acker.err")
: >"$WORK/gen.txt"
for _ in $(seq "$RUNS"); do
  taskset -c "$CPU_A" "$SLUICE" gen --target "127.0.0.1:$APORT" --records "$GEN_RECORDS" --in-flight 512 \
    --key-space 100000 --json --quiet 2>/dev/null \
    | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["in_flight_at_end"]==0; print(round(j["acked_per_s"]))' >>"$WORK/gen.txt"
done
GEN_MED=$(median <"$WORK/gen.txt")

# 2. h2load against nghttpd and against the sink, alternating, same body
mkdir -p "$WORK/root"
echo ok >"$WORK/root/index.html"
printf '%s' '{"msg":"write","key":["test","demo","t0f1hU0LMyWZKM/Pq3+tgdar+/Y=","k1"],"gen":1,"exp":1701178936,"lut":1698586936461,"bins":[{"name":"i1","type":"int","value":1},{"name":"s16","type":"str","value":"abcdefghijklmnop"},{"name":"s64","type":"str","value":"hijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs"},{"name":"l","type":"list","value":[1,2,3,4,5],"ordered":false},{"name":"m","type":"map","value":{"a":1,"b":2,"c":3},"order":"unordered"},{"name":"sluice_ts","type":"int","value":1698586936461000}]}' >"$WORK/body.json"
NPORT=$(( 20000 + RANDOM % 20000 ))
taskset -c "$CPU_B" nghttpd --no-tls -d "$WORK/root" "$NPORT" >/dev/null 2>&1 &
PIDS+=($!)
taskset -c "$CPU_B" "$SLUICE" sink --listen 127.0.0.1:0 --quiet 2>"$WORK/sink.err" &
PIDS+=($!)
SPORT=$(wait_port "$WORK/sink.err")
for _ in $(seq 100); do
  curl -s --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$NPORT/index.html" && break
  sleep 0.1
done
h2() { taskset -c "$CPU_A" h2load -t1 -c4 -m32 -n "$H2_REQUESTS" -d "$WORK/body.json" -H 'content-type: application/json' "$1" \
  | awk '/^finished in/ {gsub(",","",$4); print $4}'; }
: >"$WORK/ng.txt"; : >"$WORK/sink.txt"
for _ in $(seq "$RUNS"); do
  h2 "http://127.0.0.1:$NPORT/index.html" >>"$WORK/ng.txt"
  h2 "http://127.0.0.1:$SPORT/" >>"$WORK/sink.txt"
done
NG_MED=$(median <"$WORK/ng.txt")
SINK_MED=$(median <"$WORK/sink.txt")

echo "### perf tools ($(date -u +%Y-%m-%d), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2; exit}'), $NCPU CPUs)"
echo
echo "| figure | median of $RUNS | runs |"
echo "|---|---|---|"
echo "| \`sluice gen\` vs trivial acker, 1 core each, records/s | $GEN_MED | $(paste -sd' ' "$WORK/gen.txt") |"
echo "| h2load -t1 -c4 -m32 → nghttpd, req/s | $NG_MED | $(paste -sd' ' "$WORK/ng.txt") |"
echo "| h2load -t1 -c4 -m32 → \`sluice sink\`, req/s | $SINK_MED | $(paste -sd' ' "$WORK/sink.txt") |"
echo "| sink / nghttpd | $(python3 -c "print(round($SINK_MED/$NG_MED,2))") | |"

#!/usr/bin/env bash
# Benchmarks of the perf tools themselves (not of the connector):
#  1. `sluice gen` alone against the bundled trivial acker: records/s on one core.
#  2. `h2load -t1` against `nghttpd` and against `sluice sink`, same body,
#     same flags, alternating: the sink must answer at least as many
#     requests/s. Also the server's CPU per request (utime+stime of the
#     process around each run), steadier than rates on a shared machine.
#     Two sinks take turns with nghttpd: its HTTP/2 server from the h2 crate
#     (`--h2-server h2`) and its own (`--h2-server lite`).
# Prints a Markdown section on stdout. Needs nghttp2-client, nghttp2-server.
# Usage: scripts/bench-perf-tools.sh [RUNS]   (SLUICE=path/to/sluice to override;
#        GEN_RECORDS=0 skips the generator figure)
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
: >"$WORK/gen.txt"
if [ "$GEN_RECORDS" -gt 0 ]; then
taskset -c "$CPU_B" "$SLUICE" gen --acker 127.0.0.1:0 2>"$WORK/acker.err" &
PIDS+=($!)
APORT=$(wait_port "$WORK/acker.err")
for _ in $(seq "$RUNS"); do
  taskset -c "$CPU_A" "$SLUICE" gen --target "127.0.0.1:$APORT" --records "$GEN_RECORDS" --in-flight 512 \
    --key-space 100000 --json --quiet 2>/dev/null \
    | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["in_flight_at_end"]==0; print(round(j["acked_per_s"]))' >>"$WORK/gen.txt"
done
GEN_MED=$(median <"$WORK/gen.txt")
else
GEN_MED="(skipped)"
fi

# 2. h2load against nghttpd and against the sink, alternating, same body
mkdir -p "$WORK/root"
echo ok >"$WORK/root/index.html"
printf '%s' '{"msg":"write","key":["test","demo","t0f1hU0LMyWZKM/Pq3+tgdar+/Y=","k1"],"gen":1,"exp":1701178936,"lut":1698586936461,"bins":[{"name":"i1","type":"int","value":1},{"name":"s16","type":"str","value":"abcdefghijklmnop"},{"name":"s64","type":"str","value":"hijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs"},{"name":"l","type":"list","value":[1,2,3,4,5],"ordered":false},{"name":"m","type":"map","value":{"a":1,"b":2,"c":3},"order":"unordered"},{"name":"sluice_ts","type":"int","value":1698586936461000}]}' >"$WORK/body.json"
NPORT=$(( 20000 + RANDOM % 20000 ))
taskset -c "$CPU_B" nghttpd --no-tls -d "$WORK/root" "$NPORT" >/dev/null 2>&1 &
NG_PID=$!
PIDS+=($NG_PID)
taskset -c "$CPU_B" "$SLUICE" sink --listen 127.0.0.1:0 --h2-server h2 --quiet 2>"$WORK/sink.err" &
SINK_PID=$!
PIDS+=($SINK_PID)
SPORT=$(wait_port "$WORK/sink.err")
taskset -c "$CPU_B" "$SLUICE" sink --listen 127.0.0.1:0 --h2-server lite --quiet 2>"$WORK/lite.err" &
LITE_PID=$!
PIDS+=($LITE_PID)
LPORT=$(wait_port "$WORK/lite.err")
for _ in $(seq 100); do
  curl -s --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$NPORT/index.html" && break
  sleep 0.1
done
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# h2 URL PID OUT: one h2load run; appends "req/s" to OUT.txt and the
# server's CPU µs per request to OUT.cpu. Every request must be answered 2xx.
h2() {
  local t0 t1 out
  t0=$(cpu_ticks "$2")
  out=$(taskset -c "$CPU_A" h2load -t1 -c4 -m32 -n "$H2_REQUESTS" -d "$WORK/body.json" -H 'content-type: application/json' "$1")
  t1=$(cpu_ticks "$2")
  grep -q "^status codes: $H2_REQUESTS 2xx" <<<"$out" || { echo "not every request answered 2xx by $1:" >&2; echo "$out" >&2; exit 1; }
  awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out" >>"$WORK/$3.txt"
  python3 -c "print(round(($t1-$t0)/$TICK*1e6/$H2_REQUESTS,2))" >>"$WORK/$3.cpu"
}
: >"$WORK/ng.txt"; : >"$WORK/sink.txt"; : >"$WORK/ng.cpu"; : >"$WORK/sink.cpu"; : >"$WORK/lite.txt"; : >"$WORK/lite.cpu"
for _ in $(seq "$RUNS"); do
  h2 "http://127.0.0.1:$NPORT/index.html" "$NG_PID" ng
  h2 "http://127.0.0.1:$SPORT/" "$SINK_PID" sink
  h2 "http://127.0.0.1:$LPORT/" "$LITE_PID" lite
done
NG_MED=$(median <"$WORK/ng.txt")
SINK_MED=$(median <"$WORK/sink.txt")
NG_CPU=$(median <"$WORK/ng.cpu")
SINK_CPU=$(median <"$WORK/sink.cpu")
LITE_MED=$(median <"$WORK/lite.txt")
LITE_CPU=$(median <"$WORK/lite.cpu")

echo "### perf tools ($(date -u +%Y-%m-%d), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2; exit}'), $NCPU CPUs)"
echo
echo "| figure | median of $RUNS | runs |"
echo "|---|---|---|"
echo "| \`sluice gen\` vs trivial acker, 1 core each, records/s | $GEN_MED | $(paste -sd' ' "$WORK/gen.txt") |"
echo "| h2load -t1 -c4 -m32 → nghttpd, req/s | $NG_MED | $(paste -sd' ' "$WORK/ng.txt") |"
echo "| h2load -t1 -c4 -m32 → \`sluice sink --h2-server h2\`, req/s | $SINK_MED | $(paste -sd' ' "$WORK/sink.txt") |"
echo "| h2load -t1 -c4 -m32 → \`sluice sink --h2-server lite\`, req/s | $LITE_MED | $(paste -sd' ' "$WORK/lite.txt") |"
echo "| sink (h2) / nghttpd, req/s | $(python3 -c "print(round($SINK_MED/$NG_MED,2))") | |"
echo "| sink (lite) / nghttpd, req/s | $(python3 -c "print(round($LITE_MED/$NG_MED,2))") | |"
echo "| nghttpd CPU µs / request | $NG_CPU | $(paste -sd' ' "$WORK/ng.cpu") |"
echo "| sink (h2) CPU µs / request | $SINK_CPU | $(paste -sd' ' "$WORK/sink.cpu") |"
echo "| sink (lite) CPU µs / request | $LITE_CPU | $(paste -sd' ' "$WORK/lite.cpu") |"
echo "| nghttpd / sink (h2), CPU per request | $(python3 -c "print(round($NG_CPU/$SINK_CPU,2))") | |"
echo "| nghttpd / sink (lite), CPU per request | $(python3 -c "print(round($NG_CPU/$LITE_CPU,2))") | |"

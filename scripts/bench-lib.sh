# Helpers shared by the benchmark and soak scripts (sourced from the
# repository root, not run): a work dir with cleanup, ports, CPU time,
# medians, JSON, waits, RESULTS.md sections.
TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
# sluice gets CPU 0; generators, load tools and servers get the rest.
LOADCPU=$([ "$NCPU" -gt 1 ] && echo 1-$((NCPU - 1)) || echo 0)

# workdir NAME [DIR]: W (DIR, or a new /tmp/sluice-NAME.*), PIDS (processes
# killed at exit) and the EXIT trap that kills them.
workdir() {
  W=${2:-$(mktemp -d "/tmp/sluice-$1.XXXXXX")}
  PIDS=()
  trap cleanup EXIT
}
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU seconds (user + sys) a live process has used.
cpu_of() { awk -v t="$TCK" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
spread() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print("%.3g–%.3g" % (min(v), max(v)))' "$@"; }
# jget FILE a.b.c: one value of a JSON file.
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d := d[k] for k in sys.argv[2].split(".")]; print(d)' "$1" "$2"; }
# wait_line FILE PATTERN: waits (10 s at most) until FILE has a line with PATTERN.
wait_line() {
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
# start_nginx PORT: nginx (one worker, on LOADCPU) answering 200 to any
# request on 127.0.0.1:PORT, its body read and dropped; in PIDS, and
# answering before this returns (5 s at most). Files under $W/nginx.
start_nginx() {
  mkdir -p "$W/nginx"
  cat >"$W/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/nginx;
  server {
    listen 127.0.0.1:$1;
    keepalive_requests 1000000;
    location / { client_max_body_size 16m; return 200; }
  }
}
EOF
  taskset -c "$LOADCPU" nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" >"$W/nginx/stdout.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
  echo "$(basename "$0"): nginx did not answer on port $1" >&2; cat "$W/nginx/error.log" >&2; return 1
}
# start_nghttpd PORT [PATH]: nghttpd (h2c, on LOADCPU, HTTP/2's default
# windows) serving "ok" at PATH (default /in) on 127.0.0.1:PORT; in PIDS, and
# answering before this returns (10 s at most). Files under $W/nghttpd.
start_nghttpd() {
  local path=${2:-/in}
  mkdir -p "$W/nghttpd"
  echo ok >"$W/nghttpd/${path#/}"
  taskset -c "$LOADCPU" nghttpd --no-tls -d "$W/nghttpd" "$1" >"$W/nghttpd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$1$path" && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nghttpd did not answer on port $1" >&2; cat "$W/nghttpd.log" >&2; return 1
}
# write_results NAME FILE: FILE (which starts with `<!-- NAME:begin -->` and
# ends with `<!-- NAME:end -->`) replaces that section of perf/RESULTS.md,
# or is appended when the file has none.
write_results() {
  python3 - "$1" "$2" <<'PY'
import os, re, sys
name, table = sys.argv[1], open(sys.argv[2]).read().strip() + "\n"
path = "perf/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# sluice performance results\n"
pat = re.compile(r"<!-- %s:begin -->.*?<!-- %s:end -->\n?" % (re.escape(name), re.escape(name)), re.S)
text = pat.sub(lambda m: table, text) if pat.search(text) else text.rstrip() + "\n\n" + table
open(path, "w").write(text)
PY
}

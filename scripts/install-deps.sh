#!/usr/bin/env bash
# Installs the real peers the tests and benchmarks run against: nghttpd and
# h2load (nghttp2), nginx, wrk, curl, openssl; and the official Aerospike
# Python client in a virtual environment under target/; make and a C compiler
# for tikv-jemalloc-sys (the binary's allocator) when the machine lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in make:make cc:gcc nghttpd:nghttp2-server h2load:nghttp2-client nginx:nginx wrk:wrk curl:curl openssl:openssl valgrind:valgrind xxd:xxd; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x target/venv/bin/python ] || ! target/venv/bin/python -c 'import aerospike' 2>/dev/null; then
  echo "== installing the aerospike Python client into target/venv"
  mkdir -p target
  python3 -m venv target/venv
  target/venv/bin/pip install -q aerospike==19.3.0 || target/venv/bin/pip install -q aerospike
fi

#!/usr/bin/env bash
# What waking another process costs on this machine (scripts/wake-cost.c):
# two processes on CPU 0 and CPU 1 bounce a byte ROUNDS times, in three
# cases, alternated RUNS times; the CPU 0 side's wall time and CPU time
# (user + system) per round trip, medians:
#   neither sleeps     both spin on non-blocking reads: the syscalls alone
#   only CPU 0 sleeps  CPU 0 blocks and is woken; its writes wake nobody
#   both sleep         as above, and each write of CPU 0 wakes CPU 1's
#                      sleeping process
#   both sleep on CPU 0  the same with both processes on CPU 0: each write
#                      wakes a process on the writer's own CPU
#   both sleep, idle CPUs poll  "both sleep" with the guest's idle CPUs
#                      polling for POLL_NS (default 200000) before they halt
#                      (cpuidle-haltpoll's guest_halt_poll_ns, which this
#                      VM's kernel command line sets to 0; restored at exit):
#                      a wake of a polling CPU needs no IPI to a halted vCPU.
#                      Only where that parameter is writable (root).
# "both sleep" minus "only CPU 0 sleeps" is the CPU a writer pays to wake a
# sleeping process on another CPU; the last case shows what the same
# exchange costs when no wake crosses CPUs (bench-batched.sh's "shared"
# placement). sluice's CPU per record depends on how
# many such wakes it makes per record (perf/RESULTS.md, batched delivery).
# The result goes into perf/RESULTS.md between the wake-cost.sh markers
# (RESULTS=0: print only).
# Usage: scripts/wake-cost.sh [RUNS]   (default 5)
# Env: ROUNDS [50000], POLL_NS [200000], RESULTS=0.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-${RUNS:-5}}
ROUNDS=${ROUNDS:-50000}
. scripts/bench-lib.sh
[ "$NCPU" -gt 1 ] || { echo "wake-cost: needs two CPUs" >&2; exit 2; }
mkdir -p target
cc -O2 -Wall -o target/wake-cost scripts/wake-cost.c
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A WALL CPU
CASES=("1 1" "0 1" "0 0" "0 0 0" "0 0")
NAMES=("neither sleeps" "only CPU 0 sleeps" "both sleep" "both sleep on CPU 0" "both sleep, idle CPUs poll")
HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
POLL_NS=${POLL_NS:-200000}
HALTPOLL0=$(cat "$HALTPOLL" 2>/dev/null || true)
NCASES=4
if [ -n "$HALTPOLL0" ] && [ -w "$HALTPOLL" ]; then
  NCASES=5
  trap 'echo "$HALTPOLL0" >"$HALTPOLL"' EXIT
fi
for i in $(seq 1 "$RUNS"); do
  for c in $(seq 0 $((NCASES - 1))); do
    [ "$NCASES" = 4 ] || { if [ "$c" = 4 ]; then echo "$POLL_NS"; else echo "$HALTPOLL0"; fi >"$HALTPOLL"; }
    # shellcheck disable=SC2086
    read -r w u < <(target/wake-cost "$ROUNDS" ${CASES[$c]})
    WALL[$c]="${WALL[$c]:-} $w"
    CPU[$c]="${CPU[$c]:-} $u"
    echo "== run $i/$RUNS, ${NAMES[$c]}: $w µs wall, $u µs CPU per round trip"
  done
done

OUT=$(mktemp /tmp/sluice-wake-cost.XXXXXX)
{
  echo "<!-- wake-cost.sh:begin -->"
  echo "## What a wake costs here (scripts/wake-cost.sh)"
  echo
  echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }'), $NCPU CPUs, kernel $(uname -r);"
  echo "$(date -u '+%Y-%m-%d %H:%M') UTC, load average before: $LOAD0."
  echo "Command: \`scripts/wake-cost.sh $RUNS\` (ROUNDS=$ROUNDS): two processes on CPUs 0 and 1 (the row \"both sleep on CPU 0\": both on CPU 0)"
  echo "bounce one byte over a Unix socket pair; the CPU 0 side's figures per round trip, median of $RUNS alternated runs."
  echo
  echo "| case | wall µs per round trip | CPU 0's CPU µs per round trip (runs) | median |"
  echo "|---|---|---|---|"
  for c in $(seq 0 $((NCASES - 1))); do
    # shellcheck disable=SC2086
    echo "| ${NAMES[$c]} | $(printf '%.1f' "$(median ${WALL[$c]})") | $(echo ${CPU[$c]} | sed 's/ /, /g') | **$(printf '%.1f' "$(median ${CPU[$c]})")** |"
  done
  echo
  # shellcheck disable=SC2086
  echo "Waking a sleeping process on the other CPU costs the writer about **$(python3 -c "print('%.1f' % ($(median ${CPU[2]}) - $(median ${CPU[1]})))") µs** of CPU here (both sleep minus only CPU 0 sleeps)."
  # shellcheck disable=SC2086
  echo "The same exchange with both processes on CPU 0 (every wake a local one) costs CPU 0 **$(printf '%.1f' "$(median ${CPU[3]})") µs** per round trip, against $(printf '%.1f' "$(median ${CPU[2]})") across CPUs."
  if [ "$NCASES" = 5 ]; then
    # shellcheck disable=SC2086
    echo "With the idle CPUs polling (haltpoll's guest_halt_poll_ns $POLL_NS instead of $HALTPOLL0) the exchange across CPUs costs CPU 0 **$(printf '%.1f' "$(median ${CPU[4]})") µs**: a wake then finds the other vCPU polling, not halted, and needs no IPI, so the difference is what this VM charges for waking a halted vCPU."
  fi
  echo "<!-- wake-cost.sh:end -->"
} >"$OUT"
cat "$OUT"
[ "${RESULTS:-1}" = 0 ] || write_results wake-cost.sh "$OUT"
rm -f "$OUT"

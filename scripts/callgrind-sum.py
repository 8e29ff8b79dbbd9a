#!/usr/bin/env python3
"""Instructions per record by crate from a callgrind file of one shard
(scripts/callgrind-shard.sh): callgrind-sum.py FILE RECORDS [TOP]."""
import collections
import re
import subprocess
import sys

path, n = sys.argv[1], float(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 0
out = subprocess.run(
    ["callgrind_annotate", "--threshold=100", "--auto=no", "--inclusive=no", path],
    capture_output=True, text=True, check=True).stdout
cats, funcs, total = collections.Counter(), collections.Counter(), 0
for line in out.splitlines():
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    v, rest = int(m[1].replace(",", "")), m[2]
    if "PROGRAM TOTALS" in rest:
        total = v
        continue
    sym = rest.split(":", 1)[1] if ":" in rest else rest
    # The thread's entry frames carry the whole program inclusively.
    if sym.startswith(("clone", "start_thread", "<std::sys::thread",
                       "core::ops::function::FnOnce::call_once{{vtable")):
        continue
    sym = re.sub(r" \[.*\]$", "", sym)
    if "sluice_codec::ack" in sym or "MsgHeader::write" in sym:
        cat = "ack"
    elif any(k in sym for k in ("sluice_codec", "itoa", "ryu", "zmij")):
        cat = "codec"
    elif "memcpy" in sym or "memmove" in sym:
        cat = "memcpy"
    elif "memset" in sym:
        cat = "memset"
    elif "sluice_shards" in sym:
        cat = "shards"
    elif "glommio" in sym:
        cat = "glommio"
    elif "h2::" in sym or "hpack" in sym:
        cat = "h2"
    elif "rjem" in sym or "jemalloc" in sym:
        cat = "jemalloc"
    elif "hdrhistogram" in sym:
        cat = "hdrhist"
    else:
        cat = "other"
    cats[cat] += v
    funcs[sym] += v
print(f"total {total / n:8.0f} instructions/record; outside the codec {(total - cats['codec']) / n:8.0f}")
for k, v in cats.most_common():
    print(f"  {k:9} {v / n:8.0f}")
shown = 0
for k, v in funcs.most_common():
    if shown >= top:
        break
    if "sluice_codec" in k:
        continue
    print(f"    {v / n:7.1f}  {k[:150]}")
    shown += 1

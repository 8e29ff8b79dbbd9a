#!/usr/bin/env python3
"""Writes records through the official Aerospike Python client to one node
(the facade) and prints, one JSON line each, what it wrote: the key, the
digest the client computed, and the bins. The test compares these, value for
value, with what reached the sink.

Usage: aerospike_write.py --port PORT [--count N]
Exit code 0 only if every write succeeded.
"""

import argparse
import base64
import json
import sys

import aerospike


def records(count):
    """Deterministic records covering the particle types the client writes."""
    for i in range(count):
        key_kind = i % 3
        if key_kind == 0:
            user_key = f"user-{i}"
        elif key_kind == 1:
            user_key = 1000 + i
        else:
            user_key = bytearray(f"blob-{i}".encode())
        bins = {
            "i": i * 7 - 3,
            "s": f"value-{i}",
            "f": i + 0.25,
            "l": [i, f"item-{i}", 1.5],
            "m": {"a": i, "b": f"x{i}"},
            "t": (i % 2) == 0,
        }
        if i % 4 == 0:
            bins["b"] = bytearray(b"\x00\x01\xfe" + bytes([i % 256]))
        yield user_key, bins


def jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return {"blob": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=30)
    args = ap.parse_args()
    config = {
        "hosts": [("127.0.0.1", args.port)],
        "policies": {"write": {"key": aerospike.POLICY_KEY_SEND}},
    }
    client = aerospike.client(config).connect()
    failures = 0
    for user_key, bins in records(args.count):
        key = ("test", "demo", user_key)
        try:
            client.put(key, bins)
        except aerospike.exception.AerospikeError as e:
            failures += 1
            print(f"put {user_key!r} failed: {e}", file=sys.stderr)
            continue
        digest = aerospike.calc_digest("test", "demo", user_key)
        print(json.dumps({
            "digest": bytes(digest).hex(),
            "key": jsonable(user_key),
            "bins": jsonable(bins),
        }), flush=True)
    client.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

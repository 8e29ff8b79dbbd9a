#!/usr/bin/env python3
"""A one-node Aerospike "cluster" facade for tests.

An official Aerospike client needs a server that answers its info requests
(node name, partition map, peers) before it writes. This facade answers those
(the answers that satisfied the clients in shared/vectors/handshake-*.log) and
relays every type-3/4 message, byte for byte, to the connector's XDR port over
a connection of its own, and the connector's 30-byte answer back to the
client. So an independent implementation of the wire protocol (the client)
produces the frames the connector parses.

Usage: aerospike_facade.py --listen PORT --connector HOST:PORT
Prints "facade listening on PORT" once bound; exits on SIGTERM.
"""

import argparse
import asyncio
import base64
import signal
import struct
import sys

NODE = "BB9020011AC4202"
# Every partition (4096) owned by this node, for two namespaces.
BITMAP = base64.b64encode(b"\xff" * 512).decode()


def info_answer(name, port):
    """The value the facade gives for one info command."""
    if name.startswith("user-agent-set"):
        return "ok"
    table = {
        "node": NODE,
        "partition-generation": "1",
        "peers-generation": "1",
        "cluster-name": "fake",
        "build": "8.1.0.0",
        "features": "batch-index;blob-bits;cdt-list;cdt-map;geo;float;pipelining;"
        "peers;pscans;query-show;relaxed-sc;replicas;replicas-all;replicas-master;"
        "truncate-namespace;udf",
        "peers-clear-std": f"1,{port},[]",
        "peers-clear-alt": f"1,{port},[]",
        "peers-tls-std": f"1,{port},[]",
        "replicas": f"test:0,1,{BITMAP};bar:0,1,{BITMAP}",
        "replicas-all": f"test:1,{BITMAP};bar:1,{BITMAP}",
        "replicas-master": f"test:{BITMAP};bar:{BITMAP}",
        "namespaces": "test;bar",
        "version": "Aerospike Enterprise Edition build 8.1.0.0",
        "edition": "Aerospike Enterprise Edition",
        "service-clear-std": f"127.0.0.1:{port}",
    }
    return table.get(name, "")


async def read_frame(reader):
    header = await reader.readexactly(8)
    size = int.from_bytes(header[2:8], "big")
    body = await reader.readexactly(size)
    return header, body


class Relay:
    def __init__(self, port, connector):
        self.port = port
        self.connector = connector
        self.relayed = 0

    async def handle(self, reader, writer):
        upstream = None
        try:
            while True:
                try:
                    header, body = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                ptype = header[1]
                if ptype == 1:
                    names = [n for n in body.decode().split("\n") if n]
                    text = "".join(f"{n}\t{info_answer(n, self.port)}\n" for n in names)
                    out = text.encode()
                    writer.write(bytes([2, 1]) + len(out).to_bytes(6, "big") + out)
                    await writer.drain()
                elif ptype in (3, 4):
                    if upstream is None:
                        host, port = self.connector.rsplit(":", 1)
                        upstream = await asyncio.open_connection(host, int(port))
                    ur, uw = upstream
                    uw.write(header + body)
                    await uw.drain()
                    ah, ab = await read_frame(ur)
                    self.relayed += 1
                    writer.write(ah + ab)
                    await writer.drain()
                else:
                    print(f"facade: unexpected proto type {ptype}", file=sys.stderr)
                    return
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--connector", required=True)
    args = ap.parse_args()
    relay = Relay(args.listen, args.connector)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", args.listen)
    print(f"facade listening on {args.listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"facade relayed {relay.relayed}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

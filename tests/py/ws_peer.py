#!/usr/bin/python3
"""ws_peer.py - an independent WebSocket peer for tests/test_ws_interop.c,
built on the Debian python3-websockets package (10.x) and the standard library.

  ws_peer.py server PORTFILE
      Echo server on 127.0.0.1, port 0. Writes the bound port to PORTFILE
      (atomically, by rename), echoes text as text and binary as binary, and
      exits after its first client has gone. Accepts subprotocol "msgwire".

  ws_peer.py client URL N
      Connects (offering subprotocol "msgwire"), sends N text and N binary
      messages, a fragmented text and a fragmented binary message, a 1 MiB
      text and a 1 MiB binary message and a ping, checks every echo (type and
      content, in order), closes with 1000 and prints OK.

Exit status 0 on success; on failure a reason goes to stderr and the status
is 1. Loopback only.
"""
import asyncio
import os
import sys

import websockets

MIB = 1 << 20
TIMEOUT = 30


def fail(msg):
    print("ws_peer: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


async def serve(portfile):
    done = asyncio.get_running_loop().create_future()

    async def handler(ws, path=None):
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not done.done():
                done.set_result((ws.close_code, getattr(ws, "path", path)))

    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None,
                                subprotocols=["msgwire"], ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        tmp = portfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, portfile)
        code, path = await asyncio.wait_for(done, TIMEOUT)
    print("closed %s path %s" % (code, path), flush=True)


def expect(got, want, what):
    if type(got) is not type(want):
        fail("%s: got a %s message, want %s" % (what, type(got).__name__, type(want).__name__))
    if got != want:
        fail("%s: echo differs (%d bytes, want %d)" % (what, len(got), len(want)))


async def client(url, n):
    async with websockets.connect(url, max_size=None, compression=None, subprotocols=["msgwire"],
                                  ping_interval=None, open_timeout=TIMEOUT) as ws:
        if ws.subprotocol != "msgwire":
            fail("subprotocol %r, want 'msgwire'" % ws.subprotocol)
        sent = []
        for i in range(n):
            sent.append("text %d: h\u00e9llo \u20ac \U0001F600" % i)
            sent.append(bytes([i % 256, 0, 255]) + b"binary %d" % i)
        for m in sent:
            await ws.send(m)
        for i, m in enumerate(sent):
            expect(await asyncio.wait_for(ws.recv(), TIMEOUT), m, "message %d" % i)
        # fragmented messages: sending an iterable sends one fragment per item
        await ws.send(["frag", "mented \u20ac", " text"])
        expect(await asyncio.wait_for(ws.recv(), TIMEOUT), "fragmented \u20ac text", "fragmented text")
        await ws.send([b"\x00\x01", b"", b"\x02" * 1000])
        expect(await asyncio.wait_for(ws.recv(), TIMEOUT), b"\x00\x01" + b"\x02" * 1000, "fragmented binary")
        big_text = "".join(chr(ord("a") + i % 26) for i in range(MIB))
        big_bin = bytes((i * 7 + 3) % 256 for i in range(MIB))
        await ws.send(big_text)
        await ws.send(big_bin)
        expect(await asyncio.wait_for(ws.recv(), TIMEOUT), big_text, "1 MiB text")
        expect(await asyncio.wait_for(ws.recv(), TIMEOUT), big_bin, "1 MiB binary")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, TIMEOUT)
        await ws.close(code=1000, reason="done")
        if ws.close_code != 1000:
            fail("close code %s, want 1000" % ws.close_code)
    print("OK", flush=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "server":
        asyncio.run(serve(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "client":
        try:
            asyncio.run(client(sys.argv[2], int(sys.argv[3])))
        except (websockets.WebSocketException, OSError, asyncio.TimeoutError) as e:
            fail("%s: %s" % (type(e).__name__, e))
    else:
        fail("usage: ws_peer.py server PORTFILE | client URL N")


if __name__ == "__main__":
    main()

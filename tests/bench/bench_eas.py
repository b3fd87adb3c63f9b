#!/usr/bin/env python3
"""tests/bench/bench_eas.py: ActiveSync figures for postern.

    python3 tests/bench/bench_eas.py --build build [--clients 20]
            [--seconds 10] [--pings 2000]

Prints:
  1. small Sync requests per second through postern (HTTPS, keep-alive,
     --clients concurrent connections, --seconds long), postern's CPU
     seconds per 1,000 requests, and the same load sent straight to the
     backend double over plain HTTP for comparison (what postern adds is
     TLS termination, parsing, the policy decision and the relay);
  2. memory per hanging Ping: --pings Ping requests held open at once
     through postern, postern's RSS growth divided by their number.

The backend is a test double (FakeEasBackend below), not SOGo: SOGo
answers a few dozen requests per second on this machine and would be the
figure. The double answers any command at once with a small WBXML Sync
body, except Ping, which it never answers (until the connection closes),
like a server in a long heartbeat. postern verifies the credentials with
the backend before a hanging command; the double accepts every password.

Everything listens on 127.0.0.1; the run stops by itself. Figures are
noisy on a shared 2-core machine: compare within one run.
"""

import argparse
import asyncio
import base64
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import HOST, Listener, Postern, free_port, pki  # noqa: E402

PATH = "/Microsoft-Server-ActiveSync"
# <Sync><Collections><Collection><Status>1</Status></Collection></Collections></Sync>
SYNC_BODY = bytes.fromhex("03016a00000045 5c 4f 4e 0331 00 01 01 01 01".replace(" ", ""))
AUTH = "Basic " + base64.b64encode(b"user1:secret").decode()


class FakeEasBackend:
    """Test double of an ActiveSync server (plain HTTP/1.1 keep-alive) on
    its own thread and event loop."""

    def __init__(self):
        self.port = free_port()
        self.requests = 0
        self.hanging = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, HOST, self.port, backlog=4096))
        self.ready.set()
        self.loop.run_forever()

    async def _conn(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                chunked = False
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                    elif k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                if chunked:
                    while True:
                        size = int((await reader.readline()).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                elif length:
                    await reader.readexactly(length)
                self.requests += 1
                if "Cmd=Ping" in lines[0]:
                    self.hanging += 1
                    await reader.read()          # until postern closes
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                             b"MS-Server-ActiveSync: 14.1\r\nContent-Length: %d\r\n\r\n" %
                             len(SYNC_BODY) + SYNC_BODY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class BenchPostern(Postern):
    def __init__(self, backend_port):
        self.backend_port = backend_port
        super().__init__(dovecot=None, name="postern-bench-eas",
                         listeners=[Listener("activesync", tls="implicit", backend="eas")],
                         backends=[{"name": "eas", "servers": [(HOST, 0, 0)]}],
                         timeouts={"idle": 3700, "backend_ms": 30000},
                         limits={"max_sessions": 20000})

    def config_text(self):
        text = super().config_text()
        text = text.replace("imap_port = 0; pop3_port = 0;", "activesync_port = %d;" %
                            self.backend_port)
        return text.replace('log: { level = "debug"; };', 'log: { level = "warn"; };')


def sync_request(device):
    target = "%s?Cmd=Sync&User=user1&DeviceId=%s&DeviceType=SmartPhone" % (PATH, device)
    body = SYNC_BODY
    return (("POST %s HTTP/1.1\r\nHost: mail.example.test\r\nAuthorization: %s\r\n"
             "MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
             "Content-Length: %d\r\n\r\n") % (target, AUTH, len(body))).encode() + body


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if length:
        await reader.readexactly(length)
    return status


async def client_loop(port, use_tls, deadline, counts, idx):
    ctx = pki().client_context() if use_tls else None
    reader, writer = await asyncio.open_connection(
        HOST, port, ssl=ctx, server_hostname="mail.example.test" if use_tls else None)
    req = sync_request("bench%d" % idx)
    try:
        while time.monotonic() < deadline:
            writer.write(req)
            status = await read_response(reader)
            if status != 200:
                counts["errors"] += 1
            else:
                counts["ok"] += 1
    finally:
        writer.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_load(port, use_tls, clients, seconds):
    counts = {"ok": 0, "errors": 0}

    async def main():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(port, use_tls, deadline, counts, i)
                               for i in range(clients)))
    t = time.monotonic()
    asyncio.run(main())
    return counts, time.monotonic() - t


async def hold_pings(port, n, backend, hold_until):
    ctx = pki().client_context()
    conns = []
    target = "%s?Cmd=Ping&User=user1&DeviceId=pingdev&DeviceType=SmartPhone" % PATH
    req = ("POST %s HTTP/1.1\r\nHost: mail.example.test\r\nAuthorization: %s\r\n"
           "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n" % (target, AUTH)).encode()
    for i in range(n):
        r, w = await asyncio.open_connection(HOST, port, ssl=ctx,
                                             server_hostname="mail.example.test")
        w.write(req)
        conns.append((r, w))
        if i % 100 == 99:
            await asyncio.sleep(0)
    t = time.monotonic()
    while backend.hanging < n and time.monotonic() - t < 60:
        await asyncio.sleep(0.2)
    await hold_until(backend.hanging)
    for _, w in conns:
        w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pings", type=int, default=2000)
    args = ap.parse_args()
    harness.POSTERN_BIN = os.path.abspath(os.path.join(args.build, "postern"))
    harness.POSTERNCTL_BIN = os.path.abspath(os.path.join(args.build, "posternctl"))

    backend = FakeEasBackend()
    postern = BenchPostern(backend.port).start()
    try:
        pid = postern.proc.pid
        port = postern.listeners[0].port
        run_load(port, True, 2, 1)   # warm-up (credential cache, TLS)

        cpu0 = cpu_seconds(pid)
        counts, took = run_load(port, True, args.clients, args.seconds)
        cpu = cpu_seconds(pid) - cpu0
        rps = counts["ok"] / took
        print("sync via postern (TLS, %d clients): %.0f req/s, %d errors, "
              "postern CPU %.3f s per 1000 requests" %
              (args.clients, rps, counts["errors"], 1000 * cpu / max(counts["ok"], 1)))
        counts_d, took_d = run_load(backend.port, False, args.clients, args.seconds)
        print("sync direct to the backend double (plain HTTP): %.0f req/s" %
              (counts_d["ok"] / took_d))

        base = rss_kb(pid)
        result = {}

        async def measure(hanging):
            await asyncio.sleep(1)
            result["rss"] = rss_kb(pid)
            result["hanging"] = hanging
        asyncio.run(hold_pings(port, args.pings, backend, measure))
        held = result["hanging"]
        grew = result["rss"] - base
        print("hanging Ping: %d held (backend saw %d), postern RSS +%d KiB, %.1f KiB per Ping "
              "(TLS session, HTTP state, backend connection)" %
              (args.pings, held, grew, grew / max(held, 1)))
    finally:
        postern.stop()
        backend.stop()


if __name__ == "__main__":
    main()

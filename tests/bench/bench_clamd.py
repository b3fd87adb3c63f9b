#!/usr/bin/env python3
"""tests/bench/bench_clamd.py: clamd's latency on the 50 KB newsletter of
bench_rules' analyzer scenario (issue 6: the malware condition runs on the
delivery hop, so its cost is latency, reported apart from the rules' CPU).

Starts a private clamd (Debian clamav-daemon's clamd, in the foreground)
listening only on a UNIX socket in a temporary directory, with the project's
tiny signature database (tests/data/clamav: EICAR by MD5) unless --db names
another, then sends the same message N times with INSTREAM (as
policy/clamd_parser.c frames it: "zINSTREAM\\0", 4-byte big-endian lengths,
a zero length), first from one client, then from several at once, and prints
p50/p99 latency (connect to reply), scans per second and clamd's CPU per scan
(utime+stime from /proc). Stops clamd and removes the directory at the end,
also on error or ^C. Bounded: --max-seconds for the whole run (default 30),
every socket operation has a timeout.

Usage:
  bench_clamd.py --bench-rules BUILD/tests/bench/bench_rules [--count 1000]
                 [--clients 4] [--db DIR] [--max-seconds 30]
  bench_clamd.py --message FILE ...
(`cmake --build BUILD --target bench_clamd` runs the first form.)
"""
import argparse
import email
import email.policy
import hashlib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IO_TIMEOUT = 10.0
CHUNK = 65536


def instream(path, data, timeout=IO_TIMEOUT):
    """One INSTREAM scan over a fresh connection; returns (reply, seconds)."""
    frames = [b"zINSTREAM\0"]
    for i in range(0, len(data), CHUNK):
        part = data[i:i + CHUNK]
        frames.append(struct.pack("!I", len(part)) + part)
    frames.append(b"\0\0\0\0")
    payload = b"".join(frames)
    t0 = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(payload)
        out = b""
        while not out.endswith(b"\0"):
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out.rstrip(b"\0").decode("ascii", "replace"), time.perf_counter() - t0


def ping(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b"zPING\0")
        return s.recv(64).rstrip(b"\0") == b"PONG"
    finally:
        s.close()


def talk(path, command, timeout=IO_TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(command)
        out = b""
        while not out.endswith(b"\0"):
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        return out.rstrip(b"\0").decode("ascii", "replace")
    finally:
        s.close()


def inner_vba_project(data):
    """word/vbaProject.bin of the message's .docm attachment, or None."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as z:
                return z.read("word/vbaProject.bin")
        except (zipfile.BadZipFile, KeyError):
            continue
    return None


def check_depth(clamd, data, deadline):
    """Proves clamd decodes the message down to the VBA project inside the
    .docm inside the base64 part: a temporary MD5 signature of
    vbaProject.bin must be found in the message; then the signature is
    removed and clamd reloaded, so the measured scans are clean full scans."""
    vba = inner_vba_project(data)
    if vba is None:
        raise RuntimeError("the message has no .docm with word/vbaProject.bin")
    probe = os.path.join(clamd.db, "bench-probe.hdb")
    with open(probe, "w") as f:
        f.write("%s:%d:Postern.Bench.VbaProject\n" % (hashlib.md5(vba).hexdigest(), len(vba)))
    talk(clamd.socket, b"zRELOAD\0")
    reply = ""
    while time.monotonic() < deadline:
        reply, _ = instream(clamd.socket, data)
        if "Postern.Bench.VbaProject" in reply and reply.endswith(" FOUND"):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("clamd did not reach the VBA project: %r" % reply)
    os.unlink(probe)
    talk(clamd.socket, b"zRELOAD\0")
    while time.monotonic() < deadline:
        reply, _ = instream(clamd.socket, data)
        if reply.endswith(" OK"):
            return
        time.sleep(0.05)
    raise RuntimeError("clamd's reply to the message after reload: %r" % reply)


def cpu_seconds(pid):
    """utime+stime of a process (all threads), from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(sorted_v, p):
    return sorted_v[min(len(sorted_v) - 1, (len(sorted_v) * p) // 100)]


class Clamd:
    def __init__(self, db_src, workdir, threads):
        self.dir = workdir
        self.socket = os.path.join(workdir, "clamd.sock")
        self.log = os.path.join(workdir, "clamd.log")
        self.db = os.path.join(workdir, "db")
        if db_src is None:
            shutil.copytree(os.path.join(SRC, "tests", "data", "clamav"), self.db,
                            ignore=shutil.ignore_patterns("*.md"))
        else:
            self.db = db_src
        self.conf = os.path.join(workdir, "clamd.conf")
        with open(self.conf, "w") as f:
            f.write("Foreground yes\n"
                    "LocalSocket %s\n"
                    "LocalSocketMode 600\n"
                    "DatabaseDirectory %s\n"
                    "TemporaryDirectory %s\n"
                    "LogFile %s\n"
                    "StreamMaxLength 50M\n"
                    "MaxThreads %d\n"
                    "SelfCheck 0\n" % (self.socket, self.db, workdir, self.log, threads))
        self.proc = None

    def start(self, timeout):
        err = open(os.path.join(self.dir, "clamd.stderr"), "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["clamd", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err)
        err.close()
        while True:
            if self.proc.poll() is not None:
                with open(os.path.join(self.dir, "clamd.stderr"), errors="replace") as f:
                    raise RuntimeError("clamd exited (%s): %s" % (self.proc.returncode,
                                                                 f.read()[-2000:]))
            try:
                if ping(self.socket):
                    return time.monotonic() - t0
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("clamd did not answer PING within %.0f s" % timeout)
            time.sleep(0.05)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def phase(label, clamd, data, count, clients, deadline):
    """count scans spread over clients threads; prints and returns figures."""
    lat, errors, lock = [], [], threading.Lock()
    per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]

    def worker(n):
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            try:
                reply, dt = instream(clamd.socket, data)
            except OSError as e:
                with lock:
                    errors.append(str(e))
                return
            with lock:
                if reply.endswith(" OK"):
                    lat.append(dt)
                else:
                    errors.append(reply)

    cpu0, w0 = cpu_seconds(clamd.proc.pid), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - w0, cpu_seconds(clamd.proc.pid) - cpu0
    if errors:
        print("[clamd %s] %d errors, first: %s" % (label, len(errors), errors[0]))
    if not lat:
        print("[clamd %s] no completed scans" % label)
        return
    lat.sort()
    print("[clamd %s] %d scans of %d bytes, %d client%s: latency p50 %.2f ms, "
          "p99 %.2f ms, max %.2f ms; %.0f scans/s; clamd CPU %.2f ms per scan%s"
          % (label, len(lat), len(data), clients, "" if clients == 1 else "s",
             pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, lat[-1] * 1e3, len(lat) / wall,
             cpu / len(lat) * 1e3,
             "" if len(lat) == count else " (stopped at --max-seconds)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bench-rules", help="bench_rules binary (writes the message)")
    src.add_argument("--message", help="the message to scan (raw RFC 5322 file)")
    ap.add_argument("--count", type=int, default=1000, help="scans per phase (1000)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    ap.add_argument("--db", help="signature directory (default: tests/data/clamav)")
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="bound on the whole run, clamd's start included (30)")
    args = ap.parse_args()
    if shutil.which("clamd") is None:
        sys.exit("bench_clamd: clamd not found (Debian: clamav-daemon)")
    deadline = time.monotonic() + max(5.0, args.max_seconds)
    workdir = tempfile.mkdtemp(prefix="postern-bench-clamd-")
    clamd = None
    try:
        if args.message:
            with open(args.message, "rb") as f:
                data = f.read()
        else:
            out = os.path.join(workdir, "message.eml")
            subprocess.run([args.bench_rules, "--message-out", out], check=True, timeout=30)
            with open(out, "rb") as f:
                data = f.read()
        clamd = Clamd(args.db, workdir, max(10, args.clients + 2))
        started = clamd.start(timeout=max(1.0, deadline - time.monotonic()))
        print("bench_clamd: clamd %s, signatures from %s, ready in %.1f s; load average %s"
              % (subprocess.run(["clamd", "--version"], capture_output=True, text=True,
                                timeout=10).stdout.strip(),
                 args.db or "tests/data/clamav (EICAR only)", started,
                 " ".join(open("/proc/loadavg").read().split()[:3])))
        # self-check: clamd really scans (EICAR is in every database)
        eicar = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
        reply, _ = instream(clamd.socket, eicar)
        if not reply.endswith("FOUND"):
            raise RuntimeError("clamd did not find EICAR: %r" % reply)
        if args.db is None:
            check_depth(clamd, data, deadline)
            print("bench_clamd: self-check: clamd finds EICAR, and a temporary MD5 "
                  "signature of the VBA project inside the .docm attachment (then removed)")
        reply, _ = instream(clamd.socket, data)
        if not reply.endswith(" OK"):
            raise RuntimeError("clamd's reply to the message: %r" % reply)
        for _ in range(5):              # warm-up
            instream(clamd.socket, data)
        phase("sequential", clamd, data, args.count, 1, deadline)
        if args.clients > 1:
            phase("concurrent", clamd, data, args.count, args.clients, deadline)
    finally:
        if clamd is not None:
            clamd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

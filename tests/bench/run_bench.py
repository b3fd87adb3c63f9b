#!/usr/bin/env python3
"""tests/bench/run_bench.py: postern against direct-to-Dovecot, same run.

Starts a private Dovecot tuned for load (IMAP, POP3, LMTP and submission
relaying to an SMTP sink) and postern in front of it (plaintext listeners,
`tls = "none"; plaintext_auth = true;`), all on 127.0.0.1, using
tests/integration/harness.py and tests/bench/bench_flows.py; runs bench_mail
against each and prints a table of figures with the targets of issues 2 and 3
beside them.

    python3 tests/bench/run_bench.py [--build DIR] [--duration S]
        [--sessions N] [--workers N] [--skip-idle] [--direct-only]
        [--phases imap,pop3,fetch,latency,idle,lmtp,submission]

What it measures (bench_mail does the measuring):
  logins/s      IMAP (greeting, LOGIN, LOGOUT) and POP3 (greeting, USER,
                PASS, QUIT) at 50 concurrent clients, each phase --duration
                seconds after a 1 s warm-up; direct and through postern
  CPU           postern's utime+stime (/proc/PID/stat) per 1,000 logins
  memory        postern's VmRSS delta / N with N sessions logged in and in
                IDLE (N as large as the open-files limit allows: postern
                holds 2 fds per session)
  FETCH         MB/s of FETCH 1 BODY.PEEK[] of a 10 MB message, one client
                per target, the two taking turns fetch by fetch
  latency       p50/p99 of NOOP and of SELECT+FETCH (small message) round
                trips, one client per target taking turns, TCP_NODELAY on
                the client
  lmtp          messages/s of 10 KB messages to 1 and to 10 recipients,
                --flow-concurrency clients (20, Postfix's default destination
                concurrency), 10 messages per LMTP session, MAIL/RCPT/DATA
                pipelined (as Postfix does); straight to Dovecot's LMTP and
                through postern's LMTP listener (which spools the message and
                makes one LMTP transaction to the same Dovecot)
  submission    sessions/s of: connect, EHLO, AUTH PLAIN (initial
                response), MAIL, RCPT, DATA of a small message, QUIT, each
                command waiting for its reply, at --flow-concurrency;
                straight to Dovecot's submission service and through
                postern's plaintext submission listener (plaintext_auth);
                Dovecot relays every message to smtp-sink (Postfix's, which
                discards it) or, without it, to a Python sink

Bounded: every bench_mail run has its own timeout, the whole run stops by
itself, and everything listens on and connects to 127.0.0.1 only.
Exit status: 0 when every phase ran without a failed connection.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import harness  # noqa: E402
import bench_flows  # noqa: E402

PHASES = ("imap", "pop3", "fetch", "latency", "idle", "lmtp", "submission")
LMTP_USERS = 100
LMTP_SIZE = 10 * 1024
LMTP_RCPTS = (1, 10)

BENCH_USERS = 100
BENCH_PASSWORD = "bench-secret"
FETCH_USER = "fetch@example.com"
LAT_USER = "latency@example.com"
BIG_SIZE = 10 * 1024 * 1024

# issue 2's targets, and nginx's mail proxy for scale
TARGETS = {
    "login_ratio": (0.9, 0.7),       # >= x direct
    "cpu_per_1000": (0.12, 0.23),    # <= CPU-s
    "bytes_per_session": (4096, 9.7 * 1024),  # <= bytes
    "fetch_ratio": (0.95, 0.27),     # >= x direct
    "added_latency_us": (100.0, 44000.0),  # < 100 us: "tens of microseconds"
}


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class BenchDovecot(bench_flows.FlowDovecot):
    """The harness's private Dovecot (with LMTP and submission), with bench
    users and settings for load: high-performance login processes
    (service_count = 0) kept warm, mail processes reused and pre-forked, and
    limits raised for thousands of concurrent sessions."""

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path, "a") as f:
            f.write("""
# --- load tuning, appended by tests/bench/run_bench.py ---
default_process_limit = 200
default_client_limit = 15000
default_vsz_limit = 1G
mail_max_userip_connections = 30000
auth_verbose = no
service imap-login {
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 10000
}
service pop3-login {
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 10000
}
service imap {
  service_count = 1000
  process_min_avail = 16
  process_limit = 10000
  # several IDLE sessions per mail process: 10,000 single-client
  # processes would not fit in the machine's memory
  client_limit = 10
}
service pop3 {
  service_count = 1000
  process_min_avail = 16
  process_limit = 2000
}
service submission-login {
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 10000
}
service submission {
  process_min_avail = 16
  process_limit = 2000
}
service lmtp {
  process_min_avail = 8
  process_limit = 200
}
service auth {
  client_limit = 15000
}
service anvil {
  client_limit = 15000
}
service stats {
  client_limit = 15000
}
""")


class BenchPostern(bench_flows.FlowPostern):
    """postern with plaintext listeners (IMAP, POP3, submission; LMTP), one
    backend pool "store", and info-level logs (the harness logs at debug,
    which is not what a deployment runs)."""

    def config_text(self):
        return super().config_text().replace('log: { level = "debug"; };',
                                             'log: { level = "info"; };')


def loadavg():
    """The 1-minute load average: other work on this machine skews every
    figure, so the run prints it at its start and end."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def find_bench_bin(build, workdir):
    cand = os.path.join(build, "tests", "bench", "bench_mail")
    if os.path.exists(cand):
        return cand
    # not built with CMake: compile it here (it needs libc only)
    out = os.path.join(workdir, "bench_mail")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                    os.path.join(HERE, "bench_mail.c"), "-o", out], check=True)
    return out


class Runner:
    def __init__(self, bench_bin, verbose=True):
        self.bin = bench_bin
        self.ok = True
        self.verbose = verbose

    def run(self, mode, *args, timeout=300):
        """One bench_mail run; returns its (last) RESULT line as a dict."""
        results = self.run_multi(mode, *args, timeout=timeout)
        return list(results.values())[-1] if results else {}

    def run_multi(self, mode, *args, timeout=300):
        cmd = [self.bin, mode] + [str(a) for a in args] + ["--timeout", str(timeout)]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            self.ok = False
            sys.stderr.write("bench: %s did not stop in time\n" % " ".join(cmd))
            return {}
        out = r.stdout.decode(errors="replace")
        err = r.stderr.decode(errors="replace")
        if self.verbose:
            for line in out.splitlines():
                if not line.startswith("RESULT "):
                    print("  " + line)
        if err.strip():
            sys.stderr.write(err)
        if r.returncode != 0:
            self.ok = False
        results = {}
        for line in out.splitlines():
            if line.startswith("RESULT "):
                res = {}
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    try:
                        res[k] = float(v)
                    except ValueError:
                        res[k] = v
                results[res.get("label", "-")] = res
        sys.stdout.flush()
        return results


def flow_phases(runner, args, names, targets, flow_ports, R):
    """LMTP deliveries and submission sessions, direct and through postern
    taking turns run by run (a warm-up run of each first, not counted)."""
    phases = args.phase_list
    common = ["--concurrency", args.flow_concurrency, "--password", BENCH_PASSWORD,
              "--duration", args.flow_duration]
    tmo = int(args.flow_duration * 4 + 60)
    if "lmtp" in phases:
        lmtp = common + ["--user-prefix", "lmtp", "--users", LMTP_USERS, "--size", LMTP_SIZE,
                         "--per-session", args.lmtp_per_session, "--pipelining", 1]
        print("\n== warm-up (lmtp)")
        for n in names:
            runner.run("lmtp", "--port", flow_ports[n][0], "--count", 200, "--warmup", 0,
                       "--label", n + " lmtp warm-up", *lmtp, timeout=60)
        for rcpts in LMTP_RCPTS:
            print("\n== LMTP, %d KB messages to %d recipient%s, %d concurrent, "
                  "%d per session, pipelined, %.0f s each" %
                  (LMTP_SIZE // 1024, rcpts, "" if rcpts == 1 else "s",
                   args.flow_concurrency, args.lmtp_per_session, args.flow_duration))
            for rnd in range(args.rounds):
                for n in names:
                    pid = targets[n][2]
                    extra = ["--pid", pid] if pid else []
                    res = runner.run("lmtp", "--port", flow_ports[n][0], "--rcpts", rcpts,
                                     "--label", "%s lmtp x%d" % (n, rcpts), *lmtp, *extra,
                                     timeout=tmo)
                    keep_best(R[n], "lmtp%d" % rcpts, res, "rate", higher=True)
                    keep_best(R[n], "lmtp%d-cpu" % rcpts, res, "cpu_per_1000", higher=False)
    if "submission" in phases:
        sub = common + ["--users", BENCH_USERS, "--size", args.submission_size,
                        "--pipelining", 0]
        print("\n== warm-up (submission)")
        for n in names:
            runner.run("submission", "--port", flow_ports[n][1], "--count", 100, "--warmup", 0,
                       "--label", n + " submission warm-up", *sub, timeout=60)
        print("\n== submission sessions (EHLO, AUTH PLAIN, MAIL, RCPT, DATA %d bytes, QUIT), "
              "%d concurrent, %.0f s each" % (args.submission_size, args.flow_concurrency,
                                              args.flow_duration))
        for rnd in range(args.rounds):
            for n in names:
                pid = targets[n][2]
                extra = ["--pid", pid] if pid else []
                res = runner.run("submission", "--port", flow_ports[n][1], "--label",
                                 "%s submission" % n, *sub, *extra, timeout=tmo)
                keep_best(R[n], "submission", res, "rate", higher=True)
                keep_best(R[n], "submission-cpu", res, "cpu_per_1000", higher=False)


def keep_best(results, phase, res, key, higher):
    """Keeps the best of the rounds of a phase: other work on a shared
    machine only ever makes a figure worse, so the best round is the one
    least disturbed."""
    if not res or key not in res:
        return
    best = results.get(phase)
    if best is None or (res[key] > best[key] if higher else res[key] < best[key]):
        results[phase] = res


def fmt(v, spec="%.1f", none="n/a"):
    return none if v is None else spec % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("POSTERN_BUILD",
                                                      os.path.join(SRC, "build")),
                    help="build directory with postern and tests/bench/bench_mail")
    ap.add_argument("--postern", default=None, help="postern binary (default BUILD/postern)")
    ap.add_argument("--bench-bin", default=None, help="bench_mail binary")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per login phase")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--sessions", type=int, default=0,
                    help="idle sessions (default: what the open-files limit allows, max 10000)")
    ap.add_argument("--latency-count", type=int, default=2000)
    ap.add_argument("--fetch-duration", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=0, help="postern workers (0 = one per core)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="each phase alternates direct/postern this many times; "
                         "the best round of each is reported")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--direct-only", action="store_true", help="measure Dovecot only")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma-separated subset of %s (default: all)" % ",".join(PHASES))
    ap.add_argument("--flow-duration", type=float, default=5.0,
                    help="measured seconds per LMTP / submission run")
    ap.add_argument("--flow-concurrency", type=int, default=20,
                    help="clients at once for LMTP and submission")
    ap.add_argument("--lmtp-per-session", type=int, default=10,
                    help="LMTP messages per connection")
    ap.add_argument("--submission-size", type=int, default=1024,
                    help="bytes per submitted message")
    args = ap.parse_args()
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    bad = [x for x in phases if x not in PHASES]
    if bad:
        ap.error("unknown phase(s) %s; known: %s" % (",".join(bad), ",".join(PHASES)))
    if args.skip_idle and "idle" in phases:
        phases.remove("idle")
    args.phase_list = phases

    hard = raise_nofile()
    postern_bin = args.postern or os.path.join(args.build, "postern")
    have_postern = not args.direct_only and os.path.exists(postern_bin)
    if not have_postern and not args.direct_only:
        print("bench: no postern binary at %s; measuring Dovecot only" % postern_bin)
    harness.POSTERN_BIN = postern_bin
    ctl = os.path.join(args.build, "posternctl")
    if os.path.exists(ctl):
        harness.POSTERNCTL_BIN = ctl

    # postern: 2 fds per session plus listeners/loop; the generator: 1.
    # Issue 2 asks for 10,000; a 20,000-file limit leaves room for 9,900.
    sessions = args.sessions or min(10000, (hard - 200) // 2 // 100 * 100)

    # a directory of our own (not postern-it-*, which test runs clean up)
    root = tempfile.mkdtemp(prefix="postern-bench-",
                            dir=os.environ.get("POSTERN_TEST_TMP", "/tmp"))
    os.chmod(root, 0o755)   # Dovecot's unprivileged processes traverse it
    harness._run_root = root
    bench_bin = args.bench_bin or find_bench_bin(args.build, root)
    runner = Runner(bench_bin)

    users = dict(harness.USERS)
    for i in range(BENCH_USERS):
        users["bench%d@example.com" % i] = BENCH_PASSWORD
    users[FETCH_USER] = BENCH_PASSWORD
    users[LAT_USER] = BENCH_PASSWORD
    for i in range(LMTP_USERS):
        users["lmtp%d@example.com" % i] = BENCH_PASSWORD

    print("bench: run directory %s" % root)
    print("bench: machine: %d cores, open-files limit %d; loopback only; load average %s" %
          (os.cpu_count(), hard, loadavg()))
    sink = bench_flows.Sink(os.path.join(root, "sink"))
    dv = BenchDovecot(relay_port=sink.port, name="dovecot-bench", users=users)
    if "fetch" in phases:
        dv.deliver(FETCH_USER, harness.make_big_message(BIG_SIZE, to=FETCH_USER))
    dv.deliver(LAT_USER, harness.make_message(subject="latency probe", to=LAT_USER))
    for i in range(BENCH_USERS):
        # give every bench mailbox a message so LOGIN opens a real INBOX
        dv.deliver("bench%d@example.com" % i, harness.make_message(subject="hello %d" % i))
    pg = None
    sink_started = False
    t_start = time.monotonic()
    print("bench: phases %s" % ",".join(phases))
    try:
        if "submission" in phases:
            sink.start()
            sink_started = True
            print("bench: submission relay sink: %s on port %d" % (sink.kind, sink.port))
        dv.start()
        if have_postern:
            listeners = [harness.Listener("imap", "none", plaintext_auth=True, backend="store"),
                         harness.Listener("pop3", "none", plaintext_auth=True, backend="store"),
                         harness.Listener("submission", "none", plaintext_auth=True,
                                          backend="store"),
                         harness.LmtpListener()]
            pg = BenchPostern(dv, listeners=listeners, name="postern-bench",
                              workers=args.workers,
                              limits={"max_sessions": 20000})
            pg.start()
        targets = {"direct": (dv.imap_port, dv.pop3_port, None)}
        flow_ports = {"direct": (dv.lmtp_port, dv.submission_port)}
        if pg is not None:
            targets["postern"] = (pg.port("imap", "none"), pg.port("pop3", "none"), pg.proc.pid)
            flow_ports["postern"] = (pg.lmtp(trusted=True).port, pg.port("submission", "none"))
        names = list(targets)
        R = {n: {} for n in names}

        common = ["--concurrency", args.concurrency, "--users", BENCH_USERS,
                  "--password", BENCH_PASSWORD]
        # prime: a first pass of each so process pools and caches are warm
        if set(phases) & {"imap", "pop3", "fetch", "latency", "idle"}:
            print("\n== warm-up")
            for n in names:
                imap, pop3, _ = targets[n]
                runner.run("login", "--port", imap, "--proto", "imap", "--count", 200,
                           "--warmup", 0, "--label", n + " imap warm-up", *common, timeout=60)

        for proto in [x for x in ("imap", "pop3") if x in phases]:
            print("\n== %s logins, %d concurrent, %.0f s each" % (proto.upper(), args.concurrency,
                                                                 args.duration))
            for rnd in range(args.rounds):
                for n in names:
                    imap, pop3, pid = targets[n]
                    port = imap if proto == "imap" else pop3
                    extra = ["--pid", pid] if pid else []
                    res = runner.run("login", "--port", port, "--proto", proto,
                                     "--duration", args.duration, "--label",
                                     "%s %s" % (n, proto), *common, *extra,
                                     timeout=int(args.duration * 4 + 60))
                    keep_best(R[n], proto, res, "rate", higher=True)
                    keep_best(R[n], proto + "-cpu", res, "cpu_per_1000", higher=False)

        # one connection per target, taking turns operation by operation, so
        # background load falls on both alike
        pair = []
        for n in names:
            pair += (["--port", targets[n][0], "--label", n] if not pair else
                     ["--port2", targets[n][0], "--label2", n])
        if "fetch" in phases:
            print("\n== 10 MB FETCH, one client per target taking turns, %.0f s" %
                  args.fetch_duration)
        for rnd in range(args.rounds if "fetch" in phases else 0):
            res = runner.run_multi("fetch", *pair, "--user", FETCH_USER, "--password",
                                   BENCH_PASSWORD, "--duration", args.fetch_duration,
                                   timeout=int(args.fetch_duration * 4 + 60))
            for n in names:
                keep_best(R[n], "fetch", res.get(n), "mb_per_s", higher=True)

        if "latency" in phases:
            print("\n== latency, one client per target taking turns, %d round trips each" %
                  args.latency_count)
        for rnd in range(args.rounds if "latency" in phases else 0):
            res = runner.run_multi("latency", *pair, "--user", LAT_USER, "--password",
                                   BENCH_PASSWORD, "--count", args.latency_count,
                                   timeout=180)
            for n in names:
                keep_best(R[n], "latency", res.get(n), "sf_p50_us", higher=False)

        flow_phases(runner, args, names, targets, flow_ports, R)

        if pg is not None and "idle" in phases:
            print("\n== %d idle sessions through postern (LOGIN, IDLE)" % sessions)
            R["postern"]["idle"] = runner.run(
                "idle", "--port", targets["postern"][0], "--sessions", sessions,
                "--pid", pg.proc.pid, "--concurrency", args.concurrency, "--users",
                BENCH_USERS, "--password", BENCH_PASSWORD, "--settle", 3,
                "--label", "postern", timeout=600)
            pg_alive = pg.running()
        else:
            pg_alive = pg is not None and pg.running()
    finally:
        if pg is not None:
            pg.stop()
        dv.stop()
        if sink_started:
            sink.stop()

    report(R, have_postern, args, sessions)
    elapsed = time.monotonic() - t_start
    print("\nbench: %.0f s in all, load average now %s; %s" % (elapsed, loadavg(), "every phase ran cleanly" if runner.ok
                                           else "SOME PHASES HAD FAILED CONNECTIONS (see above)"))
    if have_postern and not pg_alive:
        print("bench: postern was no longer running at the end")
        runner.ok = False
    if runner.ok and not os.environ.get("POSTERN_TEST_KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("bench: run directory kept: %s" % root)
    return 0 if runner.ok else 1


def report(R, have_postern, args, sessions):
    d = R.get("direct", {})
    p = R.get("postern", {}) if have_postern else {}

    def g(res, key):
        if not res or key not in res:
            return None
        return res[key]

    def ratio(a, b):
        return None if a is None or b in (None, 0) else a / b

    def mark(ok):
        return "" if ok is None else ("  ok" if ok else "  MISSED")

    rows = []
    ph = args.phase_list
    for proto in [x for x in ("imap", "pop3") if x in ph]:
        dr, pr = g(d.get(proto), "rate"), g(p.get(proto), "rate")
        r = ratio(pr, dr)
        rows.append(("%s logins/s @%d" % (proto.upper(), args.concurrency), fmt(dr, "%.0f"),
                     fmt(pr, "%.0f"), fmt(r, "%.2fx"), ">= 0.90x (nginx 0.70x)",
                     mark(None if r is None else r >= TARGETS["login_ratio"][0])))
    for proto in [x for x in ("imap", "pop3") if x in ph and have_postern]:
        c = g(p.get(proto + "-cpu"), "cpu_per_1000")
        rows.append(("postern CPU-s/1000 %s" % proto.upper(), "", fmt(c, "%.3f"), "",
                     "<= 0.12 (nginx 0.23)",
                     mark(None if c is None else c <= TARGETS["cpu_per_1000"][0])))
    if "idle" in ph and have_postern:
        b = g(p.get("idle"), "bytes_per_session")
        rows.append(("postern bytes/idle session", "", fmt(b, "%.0f"),
                     "N=%d" % int(g(p.get("idle"), "sessions") or 0) if b is not None else "",
                     "<= 4096 (nginx 9.7 KB)",
                     mark(None if b is None else b <= TARGETS["bytes_per_session"][0])))
    if "fetch" in ph:
        df, pf = g(d.get("fetch"), "mb_per_s"), g(p.get("fetch"), "mb_per_s")
        r = ratio(pf, df)
        rows.append(("10 MB FETCH MB/s", fmt(df, "%.0f"), fmt(pf, "%.0f"), fmt(r, "%.2fx"),
                     ">= 0.95x (nginx 0.27x)",
                     mark(None if r is None else r >= TARGETS["fetch_ratio"][0])))
    for key, name in (("noop", "NOOP"), ("sf", "SELECT+FETCH")):
        for q in ("p50", "p99"):
            if "latency" not in ph:
                continue
            dv_, pv = g(d.get("latency"), "%s_%s_us" % (key, q)), \
                g(p.get("latency"), "%s_%s_us" % (key, q))
            add = None if dv_ is None or pv is None else pv - dv_
            tgt = "tens of us" + (" (nginx 44 ms)" if key == "sf" else "")
            # SELECT+FETCH is two round trips (SELECT, then FETCH once
            # SELECT's OK is in): the target is per command round trip
            trips = 2 if key == "sf" else 1
            ok = None
            if add is not None and q == "p50":
                ok = add / trips <= TARGETS["added_latency_us"][0]
            rows.append(("%s %s us" % (name, q), fmt(dv_), fmt(pv),
                         "" if add is None else
                         "%+.1f us" % add + ("" if trips == 1 else
                                              " (%+.0f/trip)" % (add / trips)),
                         tgt, mark(ok)))
    # issue 3 sets no figure for the mail flows: the ratio is reported
    flows = []
    if "lmtp" in ph:
        flows += [("lmtp%d" % n, "LMTP 10KB x%d rcpt msgs/s @%d" % (n, args.flow_concurrency))
                  for n in LMTP_RCPTS]
    if "submission" in ph:
        flows.append(("submission", "submission sessions/s @%d" % args.flow_concurrency))
    for key, name in flows:
        dr, pr = g(d.get(key), "rate"), g(p.get(key), "rate")
        r = ratio(pr, dr)
        rows.append((name, fmt(dr, "%.0f"), fmt(pr, "%.0f"), fmt(r, "%.2fx"),
                     "none set (issue 3)", ""))
    for key, name in flows:
        if not have_postern:
            continue
        c = g(p.get(key + "-cpu"), "cpu_per_1000")
        unit = "sessions" if key == "submission" else "msgs"
        rows.append(("postern CPU-s/1000 %s %s" % (key.replace("lmtp", "lmtp x"), unit), "",
                     fmt(c, "%.3f"), "", "", ""))

    print("\n== figures (best of %d rounds; %d cores shared by load generator, postern and "
          "Dovecot)" % (args.rounds, os.cpu_count()))
    hdr = ("measure", "direct", "postern", "postern vs direct", "target")
    widths = [36, 10, 10, 18, 24]
    print("".join(h.ljust(w) for h, w in zip(hdr, widths)))
    print("-" * (sum(widths) + 8))
    for row in rows:
        print("".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + row[5])


if __name__ == "__main__":
    sys.exit(main())

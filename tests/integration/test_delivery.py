#!/usr/bin/env python3
"""The delivery hop: LMTP from the MTA into postern, LMTP onwards to a real
Dovecot (dovecot-lmtpd). Per-recipient policy (refused, held, unknown),
one reply per recipient mirroring the store, a 30 MB message byte for byte,
1,000 messages pipelined through one session, the store failing mid-DATA
(451, then delivered exactly once on retry), hostile input, and a real
Postfix in front (virtual_transport = lmtp:inet: and lmtp:unix:, XFORWARD
on; mail read back through postern's IMAP front; Dovecot stopped mid-DATA,
Postfix defers and delivers exactly once after the flush).

The store is reached through a CutProxy in front of Dovecot's LMTP listener
so a test can cut a delivery in the middle of DATA."""

import os
import queue
import re
import shutil
import signal
import smtplib
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, CutProxy, DeliveryDovecot, DeliveryPostern,  # noqa: E402
                     GatewayTestCase, Listener, LmtpListener, PrivatePostfix, RawClient,
                     imap_starttls, lmtp_connect, lmtp_deliver,
                     make_big_message, make_message, main, run_root, wait_for)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
ERIN = "erin@example.com"
SENDER = "sender@example.net"

TEMPFAIL = 451
# Peak RSS of postern after a 30 MB delivery: the message must not be held
# whole in memory (spool spills past 1 MiB, the body streams in bursts).
# Sanitizer builds carry shadow memory and quarantines.
# postern's anonymous resident memory (heap, buffers: not the spool file's
# pages it maps for the rules) may grow by this much while it takes and
# delivers one 30 MB message (the spool spills to a file past 1 MiB); an
# ASan build keeps freed blocks in its quarantine, so more there
RSS_GROWTH_BOUND_KB = 8 * 1024
RSS_GROWTH_BOUND_SANITIZED_KB = 160 * 1024


def tag():
    return "t-" + uuid.uuid4().hex[:12]


def lmtp_raw(port, lhlo=True):
    """A RawClient after the greeting (and LHLO, whose reply is returned)."""
    c = RawClient(port)
    greeting = c.readline()
    assert greeting.startswith(b"220 "), greeting
    lines = []
    if lhlo:
        c.send(b"LHLO raw.postern-test\r\n")
        while True:
            line = c.readline()
            lines.append(line)
            if line[3:4] == b" ":
                break
    return c, lines


def reply(c):
    """One (possibly multi-line) reply: (code, last line)."""
    while True:
        line = c.readline()
        if line[3:4] != b"-":
            return int(line[:3]), line


class DeliveryTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DeliveryDovecot().start()
        cls.proxy = CutProxy(cls.dovecot.lmtp_port)
        cls.sock_path = os.path.join(run_root(), "lmtp.sock")
        cls.listeners = [
            LmtpListener(),                                  # trusted (XFORWARD)
            LmtpListener(trusted=["192.0.2.0/24"]),          # not trusted
            LmtpListener(path=cls.sock_path),                # UNIX socket
            Listener("imap", "starttls", backend="store"),   # to read mail back
        ]
        try:
            cls.postern = DeliveryPostern(cls.dovecot, cls.listeners,
                                          lmtp_port=cls.proxy.port).start()
        except Exception:
            cls.proxy.stop()
            cls.dovecot.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.proxy.cut_after = None
        self.proxy.cut_reset = False
        self.proxy.refuse = False
        if not self.dovecot.running():
            self.dovecot.start()

    @property
    def trusted_port(self):
        return self.postern.lmtp(trusted=True).port

    @property
    def untrusted_port(self):
        return self.postern.lmtp(trusted=False).port

    def deliver(self, rcpts, message, **kw):
        return lmtp_deliver(self.trusted_port, SENDER, rcpts, message, **kw)

    def assertStillDelivers(self, port=None):
        t = tag()
        res = lmtp_deliver(port or self.trusted_port, SENDER, [DAVE],
                           make_message(subject=t, to=DAVE))
        self.assertEqual(res[DAVE][0], 250, res)
        wait_for(lambda: self.dovecot.count_with(DAVE, t) == 1, 10, what="delivery")

    # -- delivery and policy

    def test_deliver_and_fetch_through_imap(self):
        t = tag()
        res = self.deliver([ALICE], make_message(subject=t, to=ALICE),
                           xforward="NAME=client.example.net ADDR=192.0.2.7 PROTO=ESMTP "
                                    "HELO=client.example.net IDENT=4XyZQID1 SOURCE=REMOTE")
        self.assertEqual(res[ALICE][0], 250, res)
        # The reply is the store's own (Dovecot's "Saved").
        self.assertIn(b"Saved", res[ALICE][1])
        self.assertEqual(self.dovecot.count_with(ALICE, t), 1)
        # ... and it can be read through postern's IMAP front.
        c = imap_starttls(self.postern.port("imap", "starttls"))
        try:
            c.login(ALICE, USERS[ALICE])
            c.select("INBOX")
            typ, data = c.search(None, "SUBJECT", t)
            self.assertEqual(typ, "OK")
            nums = data[0].split()
            self.assertEqual(len(nums), 1)
            typ, data = c.fetch(nums[0], "(RFC822)")
            self.assertIn(t.encode(), data[0][1])
            c.logout()
        finally:
            try:
                c.shutdown()
            except Exception:
                pass
        self.postern.wait_log(r"proto=lmtp event=decision .*user=alice@example.com "
                              r"result=allowed")

    def test_unix_socket(self):
        t = tag()
        res = lmtp_deliver(self.sock_path, SENDER, [DAVE], make_message(subject=t, to=DAVE),
                           xforward="IDENT=UNIXQID")
        self.assertEqual(res[DAVE][0], 250, res)
        self.assertEqual(self.dovecot.count_with(DAVE, t), 1)

    def test_incoming_off_refused_others_delivered(self):
        self.postern.set_user(BOB, incoming="off", message="Bob does not receive mail here.")
        try:
            t = tag()
            res = self.deliver([ALICE, BOB, ERIN], make_message(subject=t, to=ALICE))
            self.assertEqual(res[BOB][0], 550, res)
            self.assertTrue(res[BOB][1].startswith(b"5.2.1 Bob does not receive mail here."),
                            res)
            self.assertEqual(res[ALICE][0], 250, res)
            self.assertEqual(res[ERIN][0], 250, res)
            self.assertEqual(self.dovecot.count_with(ALICE, t), 1)
            self.assertEqual(self.dovecot.count_with(ERIN, t), 1)
            self.assertEqual(self.dovecot.count_with(BOB, t), 0)
            # a subaddress obeys the same flag
            res = self.deliver(["bob+news@example.com"], make_message(subject=t, to=BOB))
            self.assertEqual(res["bob+news@example.com"][0], 550, res)
        finally:
            self.postern.set_user(BOB, incoming="on")

    def test_delivery_log_line_and_metrics(self):
        # one log line per recipient per delivery, with what the MTA got
        t = tag()
        off = self.postern.log_size()
        res = self.deliver([ALICE, ERIN], make_message(subject=t, to=ALICE))
        self.assertEqual(res[ALICE][0], 250, res)
        for rcpt in (ALICE, ERIN):
            self.postern.wait_log(r'proto=lmtp event=delivery .*recipient="%s" decision=allowed '
                                  r'result=delivered code=250 ' % re.escape(rcpt), offset=off)
        if self.postern.admin_port:
            status, body = self.postern.http_get("/metrics")
            self.assertIn('postern_deliveries_total{result="delivered",reason="allowed"}', body)

    def test_delivery_log_line_with_xforward(self):
        # A trusted MTA's XFORWARD IDENT and ADDR end up in the gateway's
        # own log line, with the sender, the recipient, the decision, the
        # store's reply, the size as spooled and the duration.
        t = tag()
        ident = "QID" + uuid.uuid4().hex[:10].upper()
        msg = make_message(subject=t, to=ERIN)
        off = self.postern.log_size()
        res = self.deliver([ERIN], msg, xforward="NAME=client.example.net ADDR=192.0.2.77 "
                                                  "PROTO=ESMTP IDENT=%s" % ident)
        self.assertEqual(res[ERIN][0], 250, res)
        store_reply = res[ERIN][1].decode()   # what the MTA got, from Dovecot
        self.assertIn("Saved", store_reply)
        m = self.postern.wait_log(
            r'proto=lmtp event=delivery queue=(\S+) client=(\S+) sender="([^"]*)" '
            r'recipient="([^"]*)" decision=(\S+) result=(\S+) code=(\d+) reply="([^"]*)" '
            r"failure=(\S+) .*size=(\d+) duration_ms=(\d+)", offset=off)
        line = m.group(0)
        self.assertEqual(m.group(1), ident, line)
        self.assertEqual(m.group(2), "192.0.2.77", line)
        self.assertEqual(m.group(3), SENDER, line)
        self.assertEqual(m.group(4), ERIN, line)
        self.assertEqual(m.group(5), "allowed", line)
        self.assertEqual(m.group(6), "delivered", line)
        self.assertEqual(m.group(7), "250", line)
        self.assertEqual(m.group(8), store_reply, line)
        self.assertEqual(m.group(9), "-", line)
        self.assertEqual(int(m.group(10)), len(msg), line)
        self.assertLess(int(m.group(11)), 60000, line)
        # one line for this delivery, none for another queue id
        text = self.postern.log_text(off)
        self.assertEqual(len(re.findall(r"event=delivery queue=%s " % ident, text)), 1, text)

    def test_hold_gives_450_then_delivers(self):
        self.postern.set_user(CAROL, incoming="off", message="Held for review.")
        self.postern.ctl("user", "set", CAROL, "incoming=hold")
        t = tag()
        msg = make_message(subject=t, to=CAROL)
        try:
            res = self.deliver([CAROL, ALICE], msg)
            self.assertEqual(res[CAROL][0], 450, res)
            self.assertTrue(res[CAROL][1].startswith(b"4.2.1"), res)
            self.assertEqual(res[ALICE][0], 250, res)
            self.assertEqual(self.dovecot.count_with(CAROL, t), 0)
        finally:
            self.postern.set_user(CAROL, incoming="on")
        # The MTA retries later: now it goes through, once.
        res = self.deliver([CAROL], msg)
        self.assertEqual(res[CAROL][0], 250, res)
        self.assertEqual(self.dovecot.count_with(CAROL, t), 1)

    def test_unknown_recipient_mirrors_the_store(self):
        t = tag()
        res = self.deliver([ALICE, "nobody@example.com"], make_message(subject=t))
        # postern passes unknown recipients on (unknown_recipients = "pass")
        # and mirrors the store's refusal in the per-recipient reply.
        self.assertEqual(res["nobody@example.com"][0], 550, res)
        self.assertIn(b"5.1.1", res["nobody@example.com"][1])
        self.assertEqual(res[ALICE][0], 250, res)

    def test_replies_in_rcpt_order(self):
        t = tag()
        c, _ = lmtp_raw(self.trusted_port)
        try:
            body = make_message(subject=t)
            c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<nobody@example.com>\r\n"
                   b"RCPT TO:<%s>\r\nDATA\r\n" % (SENDER.encode(), ERIN.encode(),
                                                 DAVE.encode()))
            codes = [reply(c)[0] for _ in range(5)]
            self.assertEqual(codes, [250, 250, 250, 250, 354])
            c.send(body + b".\r\n")
            finals = [reply(c) for _ in range(3)]
            self.assertEqual([f[0] for f in finals], [250, 550, 250])
            self.assertIn(b"<erin@example.com>", finals[0][1])
            self.assertIn(b"nobody@example.com", finals[1][1])
            self.assertIn(b"<dave@example.com>", finals[2][1])
            c.send(b"QUIT\r\n")
            self.assertEqual(reply(c)[0], 221)
        finally:
            c.close()

    # -- the body

    def test_dot_stuffing_and_bare_lf(self):
        t = tag()
        c, _ = lmtp_raw(self.trusted_port)
        try:
            c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER.encode(),
                                                                  ALICE.encode()))
            self.assertEqual([reply(c)[0] for _ in range(3)], [250, 250, 354])
            c.send(b"Subject: " + t.encode() + b"\r\n\r\n"
                   b"..leading dot\r\n"
                   b"a lone . inside\r\n"
                   b"..\r\n"
                   b"bare lf line\n"
                   b"...two\n"
                   b"end.\r\n"
                   b".\r\n")
            code, line = reply(c)
            self.assertEqual(code, 250, line)
            # bare LF everywhere, commands included
            t2 = tag()
            c.send(b"MAIL FROM:<%s>\nRCPT TO:<%s>\nDATA\n" % (SENDER.encode(), ALICE.encode()))
            self.assertEqual([reply(c)[0] for _ in range(3)], [250, 250, 354])
            c.send(b"Subject: " + t2.encode() + b"\n\nonly bare\n..dot\n.\n")
            self.assertEqual(reply(c)[0], 250)
        finally:
            c.close()
        # Dovecot's maildir holds LF line ends.
        msgs = [m for m in self.dovecot.messages(ALICE) if t.encode() in m]
        self.assertEqual(len(msgs), 1)
        self.assertTrue(msgs[0].endswith(b"Subject: " + t.encode() + b"\n\n"
                                         b".leading dot\na lone . inside\n.\nbare lf line\n"
                                         b"..two\nend.\n"), msgs[0][-120:])
        msgs = [m for m in self.dovecot.messages(ALICE) if t2.encode() in m]
        self.assertEqual(len(msgs), 1)
        self.assertTrue(msgs[0].endswith(b"\n\nonly bare\n.dot\n"), msgs[0][-60:])

    def test_30mb_message_byte_identical(self):
        t = tag()
        msg = make_big_message(30 * 1024 * 1024, subject=t, to=ERIN)
        pid = self.postern.proc.pid
        # A small message first: what postern sets up once (libuv's thread
        # pool, whose threads take the history write) is not the big
        # message's cost.
        warm = self.deliver([ERIN], make_message(subject=tag(), to=ERIN))
        self.assertEqual(warm[ERIN][0], 250, warm)
        time.sleep(0.5)
        # RssAnon sampled while the message goes through (Linux keeps no
        # peak of it)
        base = self._status_kb(pid, "RssAnon")
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                v = self._status_kb(pid, "RssAnon")
                if v is not None and peak[0] is not None:
                    peak[0] = max(peak[0], v)
                done.wait(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            res = self.deliver([ERIN], msg, timeout=300)
        finally:
            done.set()
            sampler.join(5)
        elapsed = time.monotonic() - t0
        self.assertEqual(res[ERIN][0], 250, res)
        msgs = [m for m in self.dovecot.messages(ERIN) if t.encode() in m]
        self.assertEqual(len(msgs), 1)
        # Dovecot adds its trace headers on top and stores LF line ends.
        self.assertTrue(msgs[0].endswith(msg.replace(b"\r\n", b"\n")),
                        "stored message differs from the one sent")
        # Not held whole in memory: postern's peak RSS grows far less than
        # the message size (the spool spills to a file past 1 MiB and the
        # body streams to the store in bursts).
        if base is not None:
            bound = (RSS_GROWTH_BOUND_SANITIZED_KB if self._sanitized()
                     else RSS_GROWTH_BOUND_KB)
            self.assertLess(peak[0] - base, bound,
                            "anonymous RSS peaked at %d KiB from %d KiB" % (peak[0], base))
        sys.stderr.write("[delivery] 30 MB in %.1fs, postern RssAnon %s KiB before, "
                         "peak %s KiB\n" % (elapsed, base, peak[0]))

    def test_thread_pool_start_costs_little_memory(self):
        """The first offloaded write starts libuv's 16-thread pool. Its
        threads never run a stream, so they must not carry the workers'
        read buffers: those were static TLS (512 KiB zeroed in every
        thread, about 9.7 MiB for the pool); now the pool adds well under
        4 MiB of anonymous memory."""
        pg = DeliveryPostern(self.dovecot, [LmtpListener()], name="postern-pool",
                             rules={"enabled": True, "node": "pool-test"}).start()
        try:
            pid = pg.proc.pid
            time.sleep(0.3)
            threads0 = self._status_kb(pid, "Threads")
            base = self._status_kb(pid, "RssAnon")
            res = lmtp_deliver(pg.lmtp(trusted=True).port, "pool-%s@example.net" % tag(),
                               [ERIN], make_message(subject=tag(), to=ERIN))
            self.assertEqual(res[ERIN][0], 250, res)
            # the pool is up (the new-sender history write ran on it)
            wait_for(lambda: self._status_kb(pid, "Threads") >= threads0 + 16, 10,
                     what="libuv's thread pool")
            time.sleep(0.3)
            grown = self._status_kb(pid, "RssAnon") - base
            sys.stderr.write("[delivery] thread pool start: RssAnon %d KiB -> +%d KiB\n" %
                             (base, grown))
            if not self._sanitized():
                self.assertLess(grown, 4 * 1024)
        finally:
            pg.stop()

    @staticmethod
    def _status_kb(pid, field):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    @staticmethod
    def _sanitized():
        import harness
        try:
            with open(harness.POSTERN_BIN, "rb") as f:
                return b"AddressSanitizer" in f.read()
        except OSError:
            return True

    def test_size_limit_announced(self):
        c, lines = lmtp_raw(self.trusted_port)
        try:
            self.assertIn(b"250-SIZE 52428800\r\n", lines)
            c.send(b"MAIL FROM:<%s> SIZE=52428801\r\n" % SENDER.encode())
            code, line = reply(c)
            self.assertEqual(code, 552, line)
            self.assertIn(b"5.3.4", line)
        finally:
            c.close()

    def test_thousand_messages_pipelined_one_session(self):
        """1,000 messages through one LMTP session, pipelined as far as
        LMTP allows: a writer sends MAIL, RCPT and DATA in one write, and
        after each 354 the body, "." and the next message's MAIL, RCPT and
        DATA in one write, never waiting for a final reply; a reader takes
        the replies as they come and checks them in order (per message:
        MAIL 250, RCPT 250, 354, then the recipient's 250 from the store).
        Then all 1,000 are in the mailbox, once each."""
        n = 1000
        t = tag()
        c, lines = lmtp_raw(self.trusted_port)
        self.assertIn(b"250-PIPELINING\r\n", lines)
        env = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER.encode(), DAVE.encode())
        go = queue.Queue()        # one item per 354 seen by the reader
        problems = []
        finals = []

        def reader():
            try:
                for i in range(n):
                    for want in (250, 250, 354):
                        code, line = reply(c)
                        if code != want:
                            raise AssertionError("message %d: %d, not %d: %r" %
                                                 (i, code, want, line))
                    go.put(i)
                    code, line = reply(c)
                    if code != 250 or b"<dave@example.com>" not in line:
                        raise AssertionError("message %d: final %r" % (i, line))
                    finals.append(line)
                code, line = reply(c)
                if code != 221:
                    raise AssertionError("QUIT: %r" % line)
            except Exception as e:   # noqa: BLE001 (reported by the test)
                problems.append(e)
                go.put(None)

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        try:
            c.send(env)
            for i in range(n):
                got = go.get(timeout=60)
                if got is None:
                    break
                self.assertEqual(got, i)
                body = make_message(subject="%s #%d" % (t, i), to=DAVE)
                c.send(body + b".\r\n" + (env if i + 1 < n else b"QUIT\r\n"))
            rt.join(120)
            self.assertFalse(rt.is_alive(), "the reader did not finish")
        finally:
            c.close()
        self.assertEqual(problems, [])
        self.assertEqual(len(finals), n)
        stored = [m for m in self.dovecot.messages(DAVE) if t.encode() in m]
        nums = sorted(int(re.search(rb"Subject: \S+ #(\d+)", m).group(1)) for m in stored)
        self.assertEqual(nums, list(range(n)))

    # -- the store failing

    def test_store_cut_mid_data_then_retry_delivers_once(self):
        t = tag()
        msg = make_big_message(2 * 1024 * 1024, subject=t, to=ALICE)
        self.proxy.cut_after = 256 * 1024   # inside the body
        cuts = self.proxy.cuts
        res = self.deliver([ALICE, ERIN], msg)
        self.assertEqual(res[ALICE][0], TEMPFAIL, res)
        self.assertEqual(res[ERIN][0], TEMPFAIL, res)
        self.assertTrue(res[ALICE][1].startswith(b"4.3.0"), res)
        self.assertEqual(self.proxy.cuts, cuts + 1)
        time.sleep(0.5)
        self.assertEqual(self.dovecot.count_with(ALICE, t), 0)
        self.assertEqual(self.dovecot.count_with(ERIN, t), 0)
        # The MTA retries: delivered, exactly once each.
        self.proxy.cut_after = None
        res = self.deliver([ALICE, ERIN], msg)
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(res[ERIN][0], 250, res)
        self.assertEqual(self.dovecot.count_with(ALICE, t), 1)
        self.assertEqual(self.dovecot.count_with(ERIN, t), 1)

    def test_store_reset_mid_data_is_a_close(self):
        """The store's side is reset in the middle of the body (RST, no FIN
        first), at six points: each time the MTA gets 4.3.0 from the
        close itself (failure=store-closed), never after the store timeout
        (store-timeout), whether postern's next write or its next read met
        the reset first (a write used to swallow it), and nothing is
        stored."""
        self.proxy.cut_reset = True
        for i in range(6):
            t = tag()
            msg = make_big_message(2 * 1024 * 1024, subject=t, to=ALICE)
            self.proxy.cut_after = 128 * 1024 + i * 96 * 1024
            off = self.postern.log_size()
            res = self.deliver([ALICE], msg)
            self.assertEqual(res[ALICE][0], TEMPFAIL, res)
            self.assertTrue(res[ALICE][1].startswith(b"4.3.0"), res)
            m = self.postern.wait_log(r'event=delivery .*recipient="alice@example\.com" '
                                      r'.*result=deferred .* failure=(\S+) ', offset=off)
            self.assertEqual(m.group(1), "store-closed")
            self.assertEqual(self.dovecot.count_with(ALICE, t), 0)
        self.assertStillDelivers()

    def test_kept_store_connection_dropped_between_messages(self):
        """postern keeps its connection to the store between the messages
        of an MTA's session. When the store drops it meanwhile (an idle
        timeout, a restart), the next message goes over a new connection:
        every message is accepted and stored exactly once, whether postern
        saw the close before the next MAIL or only at it."""
        c = smtplib.LMTP(HOST, self.trusted_port, timeout=30)
        try:
            c.ehlo_or_helo_if_needed()
            tags = []
            for pause in (None, 0.0, 0.5, 0.0):
                t = tag()
                tags.append(t)
                if pause is not None:
                    # the kept connection (and only it) goes away
                    self.assertEqual(self.proxy.drop_all(), 1)
                    time.sleep(pause)
                self.assertEqual(c.sendmail(SENDER, [ALICE],
                                            make_message(subject=t, to=ALICE)), {})
            c.quit()
        finally:
            c.close()
        for t in tags:
            self.assertEqual(self.dovecot.count_with(ALICE, t), 1, t)

    def test_store_killed_then_restarted_delivers_once(self):
        t = tag()
        msg = make_message(subject=t, to=ALICE)
        self.dovecot.stop()
        try:
            res = self.deliver([ALICE], msg)
            self.assertEqual(res[ALICE][0], TEMPFAIL, res)
            # the session stays usable while the store is down
            c = lmtp_connect(self.trusted_port)
            try:
                self.assertEqual(c.noop()[0], 250)
            finally:
                c.quit()
        finally:
            self.dovecot.start()
        res = self.deliver([ALICE], msg)
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(self.dovecot.count_with(ALICE, t), 1)

    def test_store_refusing_connections(self):
        self.proxy.refuse = True
        res = self.deliver([ALICE], make_message(subject=tag()))
        self.assertEqual(res[ALICE][0], TEMPFAIL, res)
        self.proxy.refuse = False
        self.assertStillDelivers()

    # -- hostile input

    def test_hostile_long_line(self):
        c, _ = lmtp_raw(self.trusted_port)
        try:
            c.send(b"NOOP " + b"A" * (1024 * 1024) + b"\r\n")
            code, line = reply(c)
            self.assertEqual(code, 500, line)
            self.assertIn(b"too long", line)
            c.send(b"NOOP\r\n")
            self.assertEqual(reply(c)[0], 250)
        finally:
            c.close()
        self.assertStillDelivers()

    def test_hostile_sequence_and_xforward_untrusted(self):
        # untrusted: no XFORWARD offered, XFORWARD refused
        c, lines = lmtp_raw(self.untrusted_port)
        try:
            self.assertFalse(any(b"XFORWARD" in l for l in lines), lines)
            c.send(b"XFORWARD ADDR=203.0.113.5 NAME=forged.example\r\n")
            code, line = reply(c)
            self.assertEqual(code, 550, line)
            self.assertIn(b"5.7.0 XFORWARD not permitted", line)
            # RCPT before MAIL
            c.send(b"RCPT TO:<%s>\r\n" % ALICE.encode())
            code, line = reply(c)
            self.assertEqual(code, 503, line)
            self.assertIn(b"5.5.1", line)
            c.send(b"HELO x\r\n")
            self.assertEqual(reply(c)[0], 500)
            c.send(b"NOOP\r\n")
            self.assertEqual(reply(c)[0], 250)
        finally:
            c.close()
        # trusted: offered and accepted
        c, lines = lmtp_raw(self.trusted_port)
        try:
            self.assertIn(b"250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n", lines)
            c.send(b"XFORWARD ADDR=203.0.113.5 NAME=[UNAVAILABLE]\r\n")
            self.assertEqual(reply(c)[0], 250)
        finally:
            c.close()
        self.assertStillDelivers(self.untrusted_port)

    def test_hostile_bad_commands_close(self):
        c, _ = lmtp_raw(self.trusted_port)
        try:
            for _ in range(9):
                c.send(b"BOGUS\r\n")
                self.assertEqual(reply(c)[0], 500)
            c.send(b"BOGUS\r\n")
            code, line = reply(c)
            self.assertEqual(code, 421, line)
            c.expect_closed(10)
        finally:
            c.close()
        self.assertStillDelivers()

    def test_hostile_data_never_ends(self):
        short = DeliveryPostern(self.dovecot, [LmtpListener()], lmtp_port=self.proxy.port,
                                name="postern-short",
                                timeouts={"idle": 2, "preauth": 2, "login": 10})
        short.start()
        try:
            t = tag()
            c, _ = lmtp_raw(short.lmtp().port)
            try:
                c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER.encode(),
                                                                      ALICE.encode()))
                self.assertEqual([reply(c)[0] for _ in range(3)], [250, 250, 354])
                c.send(b"Subject: " + t.encode() + b"\r\n\r\nand then nothing")
                t0 = time.monotonic()
                rest = c.expect_closed(15)
                self.assertIn(b"421 4.4.2", rest)
                self.assertLess(time.monotonic() - t0, 10)
            finally:
                c.close()
            self.assertEqual(self.dovecot.count_with(ALICE, t), 0)
        finally:
            rc = short.stop()
            problem = short.exit_problem(rc)
            if problem:
                self.fail(problem)


class PostfixInFrontTest(GatewayTestCase):
    """A real Postfix as the MTA: virtual_transport = lmtp:inet:postern,
    XFORWARD on; a second one with lmtp:unix: postern's UNIX socket. postern
    reaches Dovecot's LMTP through a CutProxy (so a test can stop Dovecot
    while it is in the middle of DATA) and serves IMAP to read mail back."""

    postfix = postfix_unix = proxy = None

    @classmethod
    def setUpClass(cls):
        if shutil.which("postfix") is None or not os.path.exists("/usr/lib/postfix/sbin/master"):
            raise __import__("unittest").SkipTest("postfix not installed (scripts/deps.sh)")
        if os.geteuid() != 0:
            raise __import__("unittest").SkipTest("a private Postfix needs root")
        cls.dovecot = DeliveryDovecot(name="dovecot-pf").start()
        # run_root() is 0755 and the socket 0666: Postfix's lmtp client
        # (user postfix) can connect.
        cls.sock_path = os.path.join(run_root(), "lmtp-pf.sock")
        try:
            cls.proxy = CutProxy(cls.dovecot.lmtp_port)
            cls.postern = DeliveryPostern(
                cls.dovecot,
                [LmtpListener(), LmtpListener(path=cls.sock_path),
                 Listener("imap", "starttls", backend="store")],
                lmtp_port=cls.proxy.port, name="postern-pf").start()
            cls.postfix = PrivatePostfix(cls.postern.lmtp().port).start()
            cls.postfix_unix = PrivatePostfix(cls.sock_path, name="postfix-unix").start()
        except Exception:
            cls._stop_mtas()
            if cls.postern is not None:
                cls.postern.stop()
            cls.dovecot.stop()
            raise
        cls.extra_logs = (cls.postfix, cls.postfix_unix)

    @classmethod
    def _stop_mtas(cls):
        for pf in (cls.postfix, cls.postfix_unix):
            if pf is not None:
                pf.stop()
        if cls.proxy is not None:
            cls.proxy.stop()

    @classmethod
    def tearDownClass(cls):
        cls._stop_mtas()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.proxy.hold_after = None
        self.proxy.cut_after = None
        self.proxy.held.clear()
        if not self.dovecot.running():
            self.dovecot.start()

    def wait_postfix_log(self, pattern, timeout=30, postfix=None):
        rx = re.compile(pattern)
        pf = postfix or self.postfix
        return wait_for(lambda: rx.search(pf.log_text()), timeout,
                        what="%s log /%s/" % (os.path.basename(pf.dir), pattern))

    def fetch_through_postern(self, user, subject):
        """The bodies of user's INBOX messages with this Subject, fetched
        through postern's IMAP front (imaplib, STARTTLS)."""
        c = imap_starttls(self.postern.port("imap", "starttls"))
        try:
            c.login(user, USERS[user])
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "SUBJECT", subject)
            self.assertEqual(typ, "OK")
            bodies = []
            for num in data[0].split():
                typ, msg = c.fetch(num, "(BODY.PEEK[TEXT])")
                self.assertEqual(typ, "OK")
                bodies.append(msg[0][1])
            c.logout()
            return bodies
        finally:
            try:
                c.shutdown()
            except Exception:
                pass

    def assert_postfix_to_postern(self, postfix, rcpt, relay_rx):
        """One message through `postfix` to rcpt: it lands once, Postfix
        logs status=sent with postern's (the store's) 250, postern's
        delivery line carries Postfix's queue id (XFORWARD IDENT), and the
        body fetched through postern's IMAP front is the one sent."""
        t = tag()
        body = ("Sent through Postfix (%s).\r\n..a dot-stuffed line\r\n"
                "Line %s.\r\n" % (t, "x" * 200))
        off = self.postern.log_size()
        refused = postfix.send(SENDER, [rcpt], make_message(subject=t, to=rcpt, body=body))
        self.assertEqual(refused, {})
        wait_for(lambda: self.dovecot.count_with(rcpt, t) == 1, 30, what="delivery")
        m = self.wait_postfix_log(r"([0-9A-F]{6,}): to=<%s>.*relay=%s.*status=sent "
                                  r"\(250 2\.0\.0 <%s> .*Saved" %
                                  (re.escape(rcpt), relay_rx, re.escape(rcpt)), postfix=postfix)
        qid = m.group(1)
        self.postern.wait_log(r"proto=lmtp event=delivery queue=%s client=127\.0\.0\.1 "
                              r'sender="%s" recipient="%s" decision=allowed result=delivered '
                              r"code=250 " % (qid, re.escape(SENDER), re.escape(rcpt)),
                              offset=off)
        bodies = self.fetch_through_postern(rcpt, t)
        self.assertEqual(len(bodies), 1)
        # Dovecot keeps LF line ends on disk and serves CRLF over IMAP.
        self.assertEqual(bodies[0], body.encode())
        return qid

    def test_mail_through_postfix_lands_in_dovecot(self):
        self.assert_postfix_to_postern(self.postfix, ALICE,
                                       r"127\.0\.0\.1\[127\.0\.0\.1\]:%d" %
                                       self.postern.lmtp().port)
        # Postfix spoke XFORWARD to postern (offered on a trusted listener)
        # and postern accepted it.
        self.wait_postfix_log(r"> 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: XFORWARD .*ADDR=127\.0\.0\.1")
        self.wait_postfix_log(r"< 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: 250 2\.0\.0 Ok")
        self.postern.wait_log(r"proto=lmtp event=decision .*user=alice@example\.com")

    def test_mail_through_postfix_unix_socket(self):
        # virtual_transport = lmtp:unix:<postern's socket>; XFORWARD is
        # trusted on a UNIX socket (the queue id in postern's line is it).
        self.assert_postfix_to_postern(self.postfix_unix, ERIN,
                                       r"[^,]*\[%s\]" % re.escape(self.sock_path))

    def _kill_dovecot_lmtp(self):
        """The store crashes: our Dovecot's master is stopped first (so it
        forks no new lmtp process for a connection still in the listen
        queue: such a process, ended gracefully, lingered and held the
        connection open), its lmtp children are SIGKILLed, then the master
        too. Returns the children's pids."""
        master = self.dovecot.proc.pid
        os.kill(master, signal.SIGSTOP)
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master and b"lmtp" in cmd:
                os.kill(int(d), signal.SIGKILL)
                pids.append(int(d))
        os.kill(master, signal.SIGKILL)
        self.dovecot.proc.wait(10)
        return pids

    def test_store_killed_mid_data_postfix_retries_once(self):
        """The store dies in the middle of DATA: postern answers 451, so
        Postfix keeps the message (deferred); after the store is back and
        the queue is flushed it lands exactly once and the queue is empty.
        The CutProxy only stops forwarding after 256 KiB (so the real
        Dovecot sits mid-DATA); then Dovecot crashes: its lmtp processes
        and its master are SIGKILLed (no goodbye; a SIGTERM to the master
        alone makes them answer "421 Shutting down" or linger, depending
        on timing)."""
        t = tag()
        msg = make_big_message(3 * 1024 * 1024, subject=t, to=ALICE)
        self.proxy.hold_after = 256 * 1024
        off = self.postern.log_size()
        pf_off = self.postfix.log_size()
        refused = self.postfix.send(SENDER, [ALICE], msg, timeout=60)
        self.assertEqual(refused, {})
        self.assertTrue(self.proxy.held.wait(60), "postern never streamed 256 KiB to the store")
        killed = self._kill_dovecot_lmtp()
        self.assertTrue(killed, "no dovecot/lmtp process to kill")
        self.dovecot.stop()
        # postern: the store died mid-DATA -> 451 to Postfix, from the
        # close itself (store-closed), not from the 10 s store timeout.
        # Whether postern's next write or its read meets the reset first
        # is timing; both must end the same way (a write that met it
        # first once left postern waiting for its timeout).
        line = self.postern.wait_log(
            r'proto=lmtp event=delivery queue=(\S+) .*recipient="alice@example\.com" '
            r"decision=allowed result=deferred code=(451) reply=\"([^\"]*)\" "
            r"failure=store-closed ", offset=off, timeout=60)
        qid, code, text = line.group(1), line.group(2), line.group(3)
        # ... which Postfix logs as said by postern, and defers
        self.wait_postfix_log(r"%s: to=<alice@example\.com>.*status=deferred \(host "
                              r"127\.0\.0\.1\[127\.0\.0\.1\] said: %s %s " %
                              (qid, code, re.escape(text)), timeout=60)
        self.assertNotIn("status=sent", self.postfix.log_text(pf_off))
        self.assertIn(qid, self.postfix.queue())
        self.proxy.hold_after = None
        self.dovecot.start()
        self.assertEqual(self.dovecot.count_with(ALICE, t), 0)
        self.postfix.flush()
        wait_for(lambda: self.dovecot.count_with(ALICE, t) >= 1, 90, what="redelivery")
        wait_for(lambda: qid not in self.postfix.queue(), 30, what="Postfix queue empty")
        self.wait_postfix_log(r"%s: to=<alice@example\.com>.*status=sent \(250 " % qid)
        self.assertIn("Mail queue is empty", self.postfix.queue())
        # exactly once, whole
        msgs = [mm for mm in self.dovecot.messages(ALICE) if t.encode() in mm]
        self.assertEqual(len(msgs), 1)
        self.assertTrue(msgs[0].endswith(msg.replace(b"\r\n", b"\n")),
                        "stored message differs from the one sent")
        self.assertEqual(len(re.findall(r"%s: to=<alice@example\.com>.*status=sent" % qid,
                                        self.postfix.log_text(pf_off))), 1)

    def test_hold_leaves_mail_queued(self):
        self.postern.ctl("user", "set", CAROL, "incoming=hold", "message=On hold.")
        t = tag()
        try:
            refused = self.postfix.send(SENDER, [CAROL], make_message(subject=t, to=CAROL))
            self.assertEqual(refused, {})
            self.wait_postfix_log(r"to=<carol@example\.com>.*status=deferred.*450 4\.2\.1")
            q = self.postfix.queue()
            self.assertIn("carol@example.com", q)
            self.assertIn("450 4.2.1", q)
            self.assertEqual(self.dovecot.count_with(CAROL, t), 0)
        finally:
            self.postern.set_user(CAROL, incoming="on")
        # released: the queued message is delivered once on the next run
        self.postfix.flush()
        wait_for(lambda: self.dovecot.count_with(CAROL, t) == 1, 60, what="release")
        wait_for(lambda: "carol@example.com" not in self.postfix.queue(), 30,
                 what="queue empty")

    def test_incoming_off_bounces_only_that_recipient(self):
        self.postern.set_user(BOB, incoming="off", message="No mail for Bob.")
        t = tag()
        try:
            # the null sender: the bounce goes nowhere
            refused = self.postfix.send("<>", [BOB, ERIN], make_message(subject=t, to=BOB))
            self.assertEqual(refused, {})
            self.wait_postfix_log(r"to=<bob@example\.com>.*status=bounced.*550 5\.2\.1 No mail "
                                  r"for Bob\.")
            wait_for(lambda: self.dovecot.count_with(ERIN, t) == 1, 30, what="erin")
            self.assertEqual(self.dovecot.count_with(BOB, t), 0)
        finally:
            self.postern.set_user(BOB, incoming="on")


if __name__ == "__main__":
    main()

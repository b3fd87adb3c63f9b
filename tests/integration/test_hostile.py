#!/usr/bin/env python3
"""Hostile clients: each is answered per the protocol or closed, and after
each one the gateway still serves a normal login (and, where the hostile
connection stays open, still answers it a NOOP)."""

import hashlib
import os
import random
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, Closed, GatewayTestCase, RawClient, imap_quote,  # noqa: E402
                     main, make_big_message, pki, sasl_plain)

ALICE = "alice@example.com"

# Configured for these tests. HostileTest has long timeouts, so a close it
# sees within ANSWER_S is the gateway's answer to the input, not a timeout;
# SlowClientTest has a short login timeout for the slow and silent clients.
LOGIN_TIMEOUT_S = 5
LINE_MAX = 8192
BAD_MAX = 10
ANSWER_S = 20


def send_quietly(c, data, chunk=65536):
    """Sends data; the gateway may close the connection half-way, which is
    an acceptable answer. Returns True if everything was sent."""
    try:
        for i in range(0, len(data), chunk):
            c.send(data[i:i + chunk])
        return True
    except (OSError, Closed):
        return False


def answer_or_close(c, tag, timeout=ANSWER_S):
    """Reads until the tagged reply for `tag` (or an untagged BYE; for POP3,
    tag b"-ERR": a -ERR line) arrives, or the peer closes. Returns
    (lines, closed). Fails when neither happens in time."""
    if isinstance(tag, str):
        tag = tag.encode()
    lines = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("neither an answer nor a close within %ds (got %r)" %
                                 (timeout, b"".join(lines)[-300:]))
        try:
            line = c.readline(timeout=left)
        except Closed:
            return lines, True
        except socket.timeout:
            continue
        except OSError:
            return lines, True
        lines.append(line)
        if line.startswith(tag + b" ") or line.startswith(b"* BYE") or \
                (tag == b"-ERR" and line.startswith(b"-ERR")):
            return lines, False


def read_all(c, timeout):
    """Everything until the peer closes or `timeout` passes; (data, closed)."""
    try:
        return c.expect_closed(timeout=timeout), True
    except socket.timeout:
        data = c.buf
        return data, False


class HostileTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_default(timeouts={"preauth": 120, "login": 180},
                          limits={"line": LINE_MAX, "literal": 8192, "bad_commands": BAD_MAX})

    def setUp(self):
        super().setUp()
        self.imap = self.postern.port("imap", "starttls")
        self.imaps = self.postern.port("imap", "implicit")
        self.pop3 = self.postern.port("pop3", "starttls")
        self.pop3s = self.postern.port("pop3", "implicit")

    def tearDown(self):
        # After every hostile case the gateway must still serve a normal login.
        super().tearDown()
        try:
            self.assertTrue(self.postern.running(), "postern exited")
            self.assertStillServes(self.imaps)
        except Exception:
            self.dump_logs()
            raise

    def imap_raw(self, tls=False):
        c = RawClient(self.imaps if tls else self.imap, tls=tls)
        self.assertTrue(c.readline().startswith(b"* OK"))
        return c

    # -- IMAP

    def test_one_megabyte_line(self):
        c = self.imap_raw()
        send_quietly(c, b"a NOOP " + b"x" * (1024 * 1024) + b"\r\n")
        lines, closed = answer_or_close(c, "a")
        self.assertFalse(any(l.startswith(b"a OK") for l in lines), lines)
        if not closed:
            # answered BAD and kept the connection: it must still work
            self.assertTrue(any(l.startswith(b"a BAD") or l.startswith(b"* BYE") for l in lines),
                            lines)
            if not lines[-1].startswith(b"* BYE"):
                tagged, _ = c.cmd("n", "NOOP")
                self.assertTrue(tagged.startswith(b"n OK"), tagged)
        c.close()

    def test_one_megabyte_line_over_tls(self):
        c = self.imap_raw(tls=True)
        send_quietly(c, b"a LOGIN " + b"y" * (1024 * 1024) + b" pw\r\n")
        lines, closed = answer_or_close(c, "a")
        self.assertFalse(any(l.startswith(b"a OK") for l in lines), lines)
        c.close()

    def test_literal_of_4294967296_bytes(self):
        for lit in (b"{4294967296}", b"{4294967296+}", b"{18446744073709551616}",
                    b"{99999999999999999999999}"):
            c = self.imap_raw()
            c.send(b"a LOGIN " + lit + b"\r\n")
            # expect a tagged BAD/NO or a close -- never "+ go ahead"
            try:
                line = c.readline(timeout=20)
            except Closed:
                c.close()
                continue
            self.assertFalse(line.startswith(b"+"), "continuation for %r" % lit)
            self.assertTrue(line.startswith(b"a BAD") or line.startswith(b"a NO") or
                            line.startswith(b"* BYE"), line)
            c.close()

    def test_literal_over_limit(self):
        c = self.imap_raw(tls=True)
        c.send(b"a LOGIN {%d}\r\n" % (8192 * 4))
        try:
            line = c.readline(timeout=20)
            self.assertFalse(line.startswith(b"+"), line)
        except Closed:
            pass
        c.close()

    def test_thousand_bad_commands(self):
        c = self.imap_raw()
        payload = b"".join(b"x%d BOGUS%d\r\n" % (i, i) for i in range(1000))
        send_quietly(c, payload)
        data, closed = read_all(c, ANSWER_S)
        self.assertTrue(closed, "connection still open after 1,000 bad commands")
        bads = data.count(b" BAD")
        self.assertLessEqual(bads, BAD_MAX + 1, "answered %d bad commands" % bads)
        c.close()

    def test_bad_commands_then_pipelined_noop(self):
        # a few errors (under the limit) do not stop pipelined good commands
        c = self.imap_raw()
        c.send(b"a BOGUS\r\nb NOOP\r\nc LOGIN\r\nd CAPABILITY\r\n")
        lines = c.read_until_tagged("d")
        tagged = {l.split(b" ")[0]: l for l in lines if not l.startswith(b"*")}
        self.assertTrue(tagged[b"a"].startswith(b"a BAD"), tagged)
        self.assertTrue(tagged[b"b"].startswith(b"b OK"), tagged)
        # LOGIN without arguments, before TLS: BAD, or NO [PRIVACYREQUIRED]
        self.assertTrue(tagged[b"c"].startswith(b"c BAD") or tagged[b"c"].startswith(b"c NO"),
                        tagged)
        self.assertTrue(tagged[b"d"].startswith(b"d OK"), tagged)
        tagged, _ = c.cmd("e", "NOOP")
        self.assertTrue(tagged.startswith(b"e OK"), tagged)
        c.close()

    def test_nul_and_control_bytes(self):
        c = self.imap_raw()
        c.send(b"a NO\x00OP\r\nb LOGIN \"a\x00b\" \"c\"\r\n")
        # each line is answered (not OK) or the connection is closed
        try:
            lines = c.read_until_tagged("a", timeout=10) + c.read_until_tagged("b", timeout=10)
        except Closed:
            c.close()
            return
        self.assertFalse(any(l.startswith(b"a OK") or l.startswith(b"b OK") for l in lines),
                         lines)
        tagged, _ = c.cmd("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        c.close()

    def test_tls_garbage_on_implicit_port(self):
        rnd = random.Random(42)
        for blob in (bytes(rnd.getrandbits(8) for _ in range(4096)),
                     b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
                     b"\x16\x03\x01\xff\xff" + b"\x01" * 300,        # record claims 64 KB
                     b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",      # tiny bogus hello
                     b"\x80\x80" + b"\x00" * 128):                       # SSLv2-style header
            c = RawClient(self.imaps)
            send_quietly(c, blob)
            data, closed = read_all(c, ANSWER_S)
            self.assertTrue(closed, "still open after garbage %r" % blob[:16])
            self.assertNotIn(b"* OK", data)
            c.close()

    def test_tls_garbage_after_starttls(self):
        c = self.imap_raw()
        tagged, _ = c.cmd("s", "STARTTLS")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        send_quietly(c, b"a LOGIN alice secret\r\n" + b"\x00" * 2048)
        data, closed = read_all(c, ANSWER_S)
        self.assertTrue(closed)
        c.close()

    def test_old_tls_version_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            self.skipTest("this OpenSSL cannot speak TLS 1.1")
        s = socket.create_connection((HOST, self.imaps), timeout=30)
        with self.assertRaises((ssl.SSLError, OSError)):
            t = ctx.wrap_socket(s, server_hostname="mail.example.test")
            t.recv(10)
        s.close()

    def test_client_closes_mid_handshake_and_mid_login(self):
        # abrupt closes at awkward moments
        s = socket.create_connection((HOST, self.imaps), timeout=30)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        s.close()
        c = RawClient(self.imaps, tls=True)
        c.readline()
        c.send(b"a LOGIN %s %s\r\n" % (ALICE.encode(), USERS[ALICE].encode()))
        c.sock.close()
        c = self.imap_raw()
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        c.readline()
        s2 = c.sock
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s2.close()   # RST
        time.sleep(0.5)

    def test_sasl_response_over_limit(self):
        c = self.imap_raw(tls=True)
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        send_quietly(c, b"A" * (1024 * 1024) + b"\r\n")
        lines, closed = answer_or_close(c, "a")
        self.assertFalse(any(l.startswith(b"a OK") for l in lines), lines)
        c.close()

    def test_many_connections_at_once(self):
        conns = []
        try:
            for _ in range(200):
                conns.append(socket.create_connection((HOST, self.imap), timeout=30))
            self.assertStillServes(self.imaps)
        finally:
            for s in conns:
                s.close()

    # -- POP3

    def pop_raw(self, tls=False):
        c = RawClient(self.pop3s if tls else self.pop3, tls=tls)
        self.assertTrue(c.readline().startswith(b"+OK"))
        return c

    def test_pop3_one_megabyte_line(self):
        c = self.pop_raw()
        send_quietly(c, b"USER " + b"x" * (1024 * 1024) + b"\r\n")
        lines, closed = answer_or_close(c, b"-ERR")
        self.assertFalse(any(l.startswith(b"+OK") for l in lines), lines)
        c.close()

    def test_pop3_thousand_bad_commands(self):
        c = self.pop_raw()
        send_quietly(c, b"".join(b"BOGUS%d\r\n" % i for i in range(1000)))
        data, closed = read_all(c, ANSWER_S)
        self.assertTrue(closed, "POP3 connection still open after 1,000 bad commands")
        self.assertLessEqual(data.count(b"-ERR"), BAD_MAX + 1)
        c.close()

    def test_pop3_sasl_garbage(self):
        c = self.pop_raw(tls=True)
        c.send(b"AUTH PLAIN !!!not-base64!!!\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"-ERR"), r)
        c.send(b"AUTH PLAIN " + sasl_plain("", "").encode() + b"\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"-ERR"), r)
        c.send(b"NOOP\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"+OK") or r.startswith(b"-ERR"), r)
        c.close()


def proc_status_bytes(pid, field):
    """A size field of /proc/PID/status (VmRSS, VmSize) in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s for pid %d" % (field, pid))


def vm_size(pid):
    return proc_status_bytes(pid, "VmSize")


def vm_rss(pid):
    return proc_status_bytes(pid, "VmRSS")


class BackpressureTest(GatewayTestCase):
    """The relay's backpressure end to end: a client FETCHes a 10 MB
    message and reads nothing for 3 s. postern must stop reading from
    Dovecot once its relay buffer is full, so its resident memory grows by
    at most a few relay buffers (the bound is generous: 4 x relay_buffer +
    2 MiB; without backpressure about 6 MB of the message would sit in
    postern, the rest in the kernel's socket buffers). Then the client
    reads everything and the bytes are the message's (sha256)."""

    USER = "dave@example.com"
    SIZE = 10 * 1024 * 1024

    @classmethod
    def setUpClass(cls):
        # In an ASan build, freed blocks wait in ASan's quarantine (up to
        # 256 MB) and every relayed chunk's buffer would count as growth:
        # without it, resident memory follows the live blocks again.
        cls.start_default(workers=1, asan_extra="quarantine_size_mb=0")
        # a subject of its own: the user's mailbox may hold other tests' mail
        cls.subject = "backpressure %d %d" % (os.getpid(), time.time_ns())
        cls.big = make_big_message(cls.SIZE, subject=cls.subject, to=cls.USER)
        cls.dovecot.deliver(cls.USER, cls.big)

    def relay_buffer(self):
        with open(self.postern.conf_path) as f:
            m = re.search(r"\brelay_buffer\s*=\s*(\d+)", f.read())
        self.assertIsNotNone(m, "no relay_buffer in postern's config")
        return int(m.group(1))

    def test_slow_reader_of_ten_megabytes(self):
        pid = self.postern.proc.pid
        bound = 4 * self.relay_buffer() + 2 * 1024 * 1024
        if vm_size(pid) > 1 << 40:
            # an ASan build (its shadow memory reserves terabytes of
            # address space): redzones and shadow pages of the relayed
            # buffers add about 1.5 MiB
            bound += 2 * 1024 * 1024
        # a small receive buffer before connecting: the client's kernel
        # takes little, so an unbounded relay would have to hold the rest
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(30)
        sock.connect((HOST, self.postern.port("imap", "implicit")))
        ctx = pki().client_context()
        ctx.check_hostname = False
        c = RawClient.__new__(RawClient)
        c.timeout, c.buf = 30, b""
        c.sock = ctx.wrap_socket(sock)
        try:
            self.assertTrue(c.readline().startswith(b"* OK"))
            tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(self.USER),
                                                     imap_quote(USERS[self.USER])))
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            tagged, lines = c.cmd("b", "SELECT INBOX")
            self.assertTrue(tagged.startswith(b"b OK"), tagged)
            tagged, lines = c.cmd("q", 'SEARCH SUBJECT "%s"' % self.subject)
            self.assertTrue(tagged.startswith(b"q OK"), tagged)
            found = [l for l in lines if l.startswith(b"* SEARCH ")]
            self.assertEqual(len(found), 1, lines)
            self.assertEqual(len(found[0].split()), 3, found)   # exactly one message
            num = found[0].split()[2]
            base = vm_rss(pid)
            c.send(b"f FETCH " + num + b" BODY[]\r\n")
            peak = base
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                peak = max(peak, vm_rss(pid))
                time.sleep(0.1)
            grown = peak - base
            sys.stderr.write("\n[backpressure] VmRSS %d -> %d KiB (+%d KiB; bound %d KiB)\n" %
                             (base // 1024, peak // 1024, grown // 1024, bound // 1024))
            self.assertLess(grown, bound, "postern grew by %d bytes while the client read "
                            "nothing (bound %d)" % (grown, bound))
            # now read it all
            head = c.readline(timeout=30)
            m = re.match(rb"^\* " + num + rb" FETCH \(.*BODY\[\] \{(\d+)\}\r\n$", head)
            self.assertIsNotNone(m, head)
            size = int(m.group(1))
            deadline = time.monotonic() + 120
            while len(c.buf) < size + 3:
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, "only %d of %d bytes after 120 s" % (len(c.buf), size))
                c._fill(left)
            data, c.buf = c.buf[:size], c.buf[size:]
            self.assertEqual(size, len(self.big))
            self.assertEqual(hashlib.sha256(data).hexdigest(),
                             hashlib.sha256(self.big).hexdigest(), "literal content differs")
            lines = c.read_until_tagged("f", timeout=30)
            self.assertTrue(lines[-1].startswith(b"f OK"), lines[-1])
            c.cmd("z", "LOGOUT")
        finally:
            c.close()
        self.assertStillServes(self.postern.port("imap", "implicit"))


class SlowClientTest(GatewayTestCase):
    """Clients that send too little: with timeouts.login = 5 s they are
    closed, and meanwhile others are served."""

    @classmethod
    def setUpClass(cls):
        cls.start_default(timeouts={"preauth": 30, "login": LOGIN_TIMEOUT_S},
                          limits={"line": LINE_MAX, "literal": 8192, "bad_commands": BAD_MAX})

    def setUp(self):
        super().setUp()
        self.imap = self.postern.port("imap", "starttls")
        self.imaps = self.postern.port("imap", "implicit")

    def tearDown(self):
        super().tearDown()
        try:
            self.assertTrue(self.postern.running(), "postern exited")
            self.assertStillServes(self.imaps)
        except Exception:
            self.dump_logs()
            raise

    def imap_raw(self, tls=False):
        c = RawClient(self.imaps if tls else self.imap, tls=tls)
        self.assertTrue(c.readline().startswith(b"* OK"))
        return c

    def test_unterminated_literal(self):
        c = self.imap_raw(tls=True)
        c.send(b"a LOGIN {100}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"only-ten-b")
        # while it hangs, others are served
        self.assertStillServes(self.imaps)
        # and the login timeout ends it
        data, closed = read_all(c, LOGIN_TIMEOUT_S + 25)
        self.assertTrue(closed, "unterminated literal still open after the login timeout")
        self.assertNotIn(b"a OK", data)
        c.close()
        # non-synchronising variant, client then goes quiet
        c = self.imap_raw()
        c.send(b"a LOGIN {50+}\r\nshort")
        data, closed = read_all(c, LOGIN_TIMEOUT_S + 25)
        self.assertTrue(closed)
        c.close()

    def test_slowloris_one_byte_a_second(self):
        c = self.imap_raw()
        text = b"a LOGIN alice@example.com alice-secret-but-very-slowly-typed\r\n"
        t0 = time.monotonic()
        closed = False
        served = False
        for i, b in enumerate(text):
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            # peek for a close without blocking long
            c.sock.settimeout(1.0)
            try:
                chunk = c.sock.recv(4096)
                if not chunk:
                    closed = True
                    break
                c.buf += chunk
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
            if i == 2 and not served:
                self.assertStillServes(self.imaps)
                served = True
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a one-byte-a-second client outlived the login timeout "
                        "(%ds, gave up after %.0fs)" % (LOGIN_TIMEOUT_S, elapsed))
        self.assertNotIn(b"a OK", c.buf)
        c.close()

    def test_silent_client_closed(self):
        c = self.imap_raw()
        data, closed = read_all(c, LOGIN_TIMEOUT_S + 25)
        self.assertTrue(closed, "a silent client was not closed")
        c.close()

    def test_pop3_silent_client_closed(self):
        c = RawClient(self.postern.port("pop3", "implicit"), tls=True)
        self.assertTrue(c.readline().startswith(b"+OK"))
        data, closed = read_all(c, LOGIN_TIMEOUT_S + 25)
        self.assertTrue(closed, "a silent POP3 client was not closed")
        c.close()


if __name__ == "__main__":
    main()

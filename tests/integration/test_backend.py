#!/usr/bin/env python3
"""Backend pools: a server that is down gives [UNAVAILABLE] / [SYS/TEMP]; a
pool fails over to its next server; misbehaving backends (closing at once,
silent, odd banners) are answered the same way; a backend that goes away and
comes back is used again."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, Dovecot, FakeBackend, GatewayTestCase, Listener,  # noqa: E402
                     Postern, RawClient, free_port, imap_quote, main, metric_sum, sasl_plain,
                     wait_for)

ALICE = "alice@example.com"
BOB = "bob@example.com"

POOLS = ("dead", "failover", "closer", "silent", "banner", "flaky")


class BackendTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot().start()
        cls.flaky = Dovecot(name="dovecot-flaky").start()
        cls.extra_logs = (cls.flaky,)
        cls.fakes = {
            "closer": FakeBackend("close"),
            "silent": FakeBackend("silent"),
            "banner_imap": FakeBackend("banner", b"* BYE [UNAVAILABLE] go away\r\n"),
            "banner_pop3": FakeBackend("banner", b"-ERR [SYS/TEMP] go away\r\n"),
        }
        dead_imap, dead_pop3 = free_port(), free_port()
        dv = cls.dovecot
        backends = [
            {"name": "dead", "servers": [(HOST, dead_imap, dead_pop3)],
             "connect_timeout_ms": 2000},
            {"name": "failover", "servers": [(HOST, dead_imap, dead_pop3),
                                             (HOST, dv.imap_port, dv.pop3_port)],
             "connect_timeout_ms": 2000},
            {"name": "closer", "servers": [(HOST, cls.fakes["closer"].port,
                                            cls.fakes["closer"].port)]},
            {"name": "silent", "servers": [(HOST, cls.fakes["silent"].port,
                                            cls.fakes["silent"].port)]},
            {"name": "banner", "servers": [(HOST, cls.fakes["banner_imap"].port,
                                            cls.fakes["banner_pop3"].port)]},
            {"name": "flaky", "servers": [(HOST, cls.flaky.imap_port, cls.flaky.pop3_port)]},
        ]
        listeners = []
        for pool in POOLS:
            listeners.append(Listener("imap", "implicit", backend=pool))
            listeners.append(Listener("pop3", "implicit", backend=pool))
        try:
            cls.postern = Postern(dv, listeners=listeners, backends=backends,
                                  timeouts={"backend_ms": 2000}).start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "flaky", None):
            cls.flaky.stop()
        for f in getattr(cls, "fakes", {}).values():
            f.stop()

    def port(self, pool, protocol):
        for l in self.postern.listeners:
            if l["backend"] == pool and l["protocol"] == protocol:
                return l.port
        raise KeyError(pool)

    def imap_login(self, pool, user=ALICE, timeout=30):
        """Returns (tagged reply, client) for LOGIN on the pool's listener."""
        c = RawClient(self.port(pool, "imap"), tls=True, timeout=timeout)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
        return tagged, c

    def pop3_login(self, pool, user=BOB, timeout=30, sasl=False):
        c = RawClient(self.port(pool, "pop3"), tls=True, timeout=timeout)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"+OK"), greeting)
        if sasl:
            c.send(b"AUTH PLAIN %s\r\n" % sasl_plain(user, USERS[user]).encode())
            return c.readline(), c
        c.send(b"USER %s\r\n" % user.encode())
        r = c.readline()
        if not r.startswith(b"+OK"):
            return r, c
        c.send(b"PASS %s\r\n" % USERS[user].encode())
        return c.readline(), c

    def assertImapUnavailable(self, pool):
        tagged, c = self.imap_login(pool)
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        c.close()

    def assertPop3SysTemp(self, pool):
        r, c = self.pop3_login(pool)
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
        c.close()
        r, c = self.pop3_login(pool, sasl=True)
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
        c.close()

    def test_dead_server_imap_unavailable(self):
        self.assertImapUnavailable("dead")

    def test_dead_server_pop3_sys_temp(self):
        self.assertPop3SysTemp("dead")

    def test_failover_to_next_server(self):
        off = self.dovecot.log_size()
        tagged, c = self.imap_login("failover")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()
        r, c = self.pop3_login("failover")
        self.assertTrue(r.startswith(b"+OK"), r)
        c.send(b"STAT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.close()
        self.dovecot.wait_login(ALICE, "imap", offset=off)
        self.dovecot.wait_login(BOB, "pop3", offset=off)

    def test_backend_closing_at_once(self):
        self.assertImapUnavailable("closer")
        self.assertPop3SysTemp("closer")

    def test_backend_silent(self):
        # backend_ms = 2000: the login answer comes after that, not never.
        self.assertImapUnavailable("silent")
        self.assertPop3SysTemp("silent")

    def test_backend_refusing_banner(self):
        self.assertImapUnavailable("banner")
        self.assertPop3SysTemp("banner")

    def test_backend_goes_away_and_comes_back(self):
        tagged, live = self.imap_login("flaky")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = live.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        self.flaky.stop()
        # the relayed session ends with its backend
        try:
            live.expect_closed(timeout=20)
        except socket.timeout:
            self.fail("relayed session still open 20 s after its backend stopped")
        live.close()
        self.assertImapUnavailable("flaky")
        r, c = self.pop3_login("flaky")
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
        c.close()
        self.flaky.start()
        tagged, c = self.imap_login("flaky")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.close()
        r, c = self.pop3_login("flaky")
        self.assertTrue(r.startswith(b"+OK"), r)
        c.close()

    def test_backend_errors_are_counted(self):
        before = metric_sum(self.postern.metrics(), "postern_backend_errors_total")
        self.assertImapUnavailable("dead")
        after = metric_sum(self.postern.metrics(), "postern_backend_errors_total")
        self.assertGreater(after, before)
        m = self.postern.metrics()
        self.assertGreater(metric_sum(m, "postern_backend_errors_total", backend="dead"), 0)

    def test_gateway_survives_everything(self):
        for pool in ("dead", "closer", "silent", "banner"):
            for _ in range(3):
                tagged, c = self.imap_login(pool)
                c.close()
        self.assertTrue(self.postern.running())
        tagged, c = self.imap_login("failover")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.close()


class BlackHole:
    """Test double for a server that never completes the TCP handshake (an
    unreachable host, which loopback cannot be): a listener on 127.0.0.1
    with backlog 0 that never accept()s, its accept queue filled by our own
    connections, so the kernel drops further SYNs and connect() hangs."""

    def __init__(self):
        self.port = free_port()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, self.port))
        self.srv.listen(0)
        self.fillers = []
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex((HOST, self.port))
            self.fillers.append(f)
        time.sleep(0.2)

    def swallows(self):
        """True when a new connection does not complete within 1 s."""
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
            return False
        except socket.timeout:
            return True
        except OSError:
            return False

    def close(self):
        for f in self.fillers:
            f.close()
        self.srv.close()


class ConnectTimeoutTest(GatewayTestCase):
    """connect_timeout_ms: the first server of a pool never answers the SYN;
    the attempt times out and the pool fails over to a real Dovecot. A pool
    of only that server answers [UNAVAILABLE] / [SYS/TEMP]. Nothing is timed
    beyond "it finished" (bounded waits)."""

    @classmethod
    def setUpClass(cls):
        cls.hole = BlackHole()
        cls.dovecot = Dovecot(name="dovecot-ct").start()
        dv = cls.dovecot
        backends = [
            {"name": "hole", "servers": [(HOST, cls.hole.port, cls.hole.port)],
             "connect_timeout_ms": 1000},
            {"name": "hole-then-dovecot", "servers": [(HOST, cls.hole.port, cls.hole.port),
                                                      (HOST, dv.imap_port, dv.pop3_port)],
             "connect_timeout_ms": 1000},
        ]
        listeners = [Listener(p, "implicit", backend=b) for b in ("hole", "hole-then-dovecot")
                     for p in ("imap", "pop3")]
        try:
            cls.postern = Postern(dv, name="postern-ct", listeners=listeners, backends=backends,
                                  timeouts={"backend_ms": 8000}).start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "hole", None):
            cls.hole.close()

    def setUp(self):
        super().setUp()
        if not self.hole.swallows():
            self.skipTest("this kernel completes handshakes on a full accept queue")

    port = BackendTest.port
    imap_login = BackendTest.imap_login
    pop3_login = BackendTest.pop3_login

    def connect_timeouts(self, off):
        return len(re.findall(r"backend-error.*backend=hole\S* .*error=connect-timeout",
                              self.postern.log_text(off)))

    def test_failover_after_connect_timeout(self):
        off = self.postern.log_size()
        doff = self.dovecot.log_size()
        tagged, c = self.imap_login("hole-then-dovecot", timeout=30)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()
        r, c = self.pop3_login("hole-then-dovecot", timeout=30)
        self.assertTrue(r.startswith(b"+OK"), r)
        c.send(b"STAT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.close()
        self.dovecot.wait_login(ALICE, "imap", offset=doff)
        self.dovecot.wait_login(BOB, "pop3", offset=doff)
        # both went through the black hole first, and left it by the timeout
        wait_for(lambda: self.connect_timeouts(off) >= 2, 10,
                 what="two connect-timeout backend errors in postern's log")

    def test_only_black_hole_is_unavailable(self):
        off = self.postern.log_size()
        m0 = self.postern.metrics()
        tagged, c = self.imap_login("hole", timeout=30)
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        c.close()
        r, c = self.pop3_login("hole", timeout=30)
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
        c.close()
        wait_for(lambda: self.connect_timeouts(off) >= 2, 10,
                 what="two connect-timeout backend errors in postern's log")
        m1 = self.postern.metrics()
        self.assertGreaterEqual(metric_sum(m1, "postern_backend_errors_total", backend="hole") -
                                metric_sum(m0, "postern_backend_errors_total", backend="hole"), 2)
        # the gateway still serves through the other pool
        tagged, c = self.imap_login("hole-then-dovecot", timeout=30)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.close()


class IdleTimeoutTest(GatewayTestCase):
    """A relayed session with no traffic either way is closed by the idle
    timeout (a POP3 listener with idle = 3 s), and its session log line says
    close=idle-timeout; traffic keeps it open."""

    IDLE_S = 3

    @classmethod
    def setUpClass(cls):
        l = Listener("pop3", "implicit")
        l["idle"] = cls.IDLE_S
        cls.start_default(listeners=[l, Listener("imap", "implicit")])

    def login(self):
        c = RawClient(self.postern.port("pop3", "implicit"), tls=True)
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"USER %s\r\n" % BOB.encode())
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"PASS %s\r\n" % USERS[BOB].encode())
        r = c.readline()
        self.assertTrue(r.startswith(b"+OK"), r)
        return c

    def end_line(self, off):
        for line in self.postern.log_text(off).splitlines():
            if "user=%s" % BOB in line and " close=" in line:
                return line
        return None

    def test_idle_session_closed(self):
        off = self.postern.log_size()
        c = self.login()
        # traffic well inside the idle time keeps the session (twice the idle time in all)
        deadline = time.monotonic() + 2 * self.IDLE_S
        while time.monotonic() < deadline:
            c.send(b"NOOP\r\n")
            self.assertTrue(c.readline().startswith(b"+OK"))
            time.sleep(0.5)
        self.assertIsNone(self.end_line(off), "session ended while in use")
        # then silence: closed, bounded wait
        try:
            c.expect_closed(timeout=self.IDLE_S + 30)
        except socket.timeout:
            self.fail("idle relayed session still open %d s later" % (self.IDLE_S + 30))
        finally:
            c.close()
        line = wait_for(lambda: self.end_line(off), 10, what="bob's session end line")
        self.assertIn("close=idle-timeout", line)
        self.assertIn("pop3", line)
        self.assertStillServes()


if __name__ == "__main__":
    main()

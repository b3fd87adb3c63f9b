#!/usr/bin/env python3
"""PROXY protocol v1/v2 listeners: the header's address is the one Dovecot
logs (via IMAP ID / POP3 XCLIENT); connections without a header, and headers
that lie, are refused while the gateway keeps serving others."""

import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, Dovecot, GatewayTestCase, Listener, Postern,  # noqa: E402
                     RawClient, imap_quote, main, proxy_v1, proxy_v2, PROXY_V2_SIG)

ALICE = "alice@example.com"
BOB = "bob@example.com"

PREAUTH_S = 12
PROMPT_S = 10
TIMEOUT_CLOSE_S = PREAUTH_S + 25


class ProxyTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        listeners = [
            Listener("imap", "starttls", proxy_protocol=True),
            Listener("imap", "implicit", proxy_protocol=True),
            Listener("pop3", "starttls", proxy_protocol=True),
            Listener("pop3", "implicit", proxy_protocol=True),
            Listener("imap", "implicit"),
        ]
        # The pre-auth timeout is longer than PROMPT_S, so a refusal seen
        # within PROMPT_S is an answer to the bad header, not the timeout.
        cls.start_default(listeners=listeners, timeouts={"preauth": PREAUTH_S, "login": 60})

    def imap_port(self, tls):
        return self.postern.port("imap", tls, proxy_protocol=True)

    def pop3_port(self, tls):
        return self.postern.port("pop3", tls, proxy_protocol=True)

    def imap_login_via(self, header, tls="implicit", user=ALICE):
        """Connects to the proxy listener, sends header, logs in, logs out.
        Returns the Dovecot log offset from before the login."""
        off = self.dovecot.log_size()
        port = self.imap_port(tls)
        c = RawClient(port, prefix=header)
        if tls == "implicit":
            c.wrap_tls()
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        if tls == "starttls":
            tagged, _ = c.cmd("s", "STARTTLS")
            self.assertTrue(tagged.startswith(b"s OK"), tagged)
            c.wrap_tls()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.cmd("z", "LOGOUT")
        c.close()
        return off

    def pop3_login_via(self, header, tls="implicit", user=BOB):
        off = self.dovecot.log_size()
        c = RawClient(self.pop3_port(tls), prefix=header)
        if tls == "implicit":
            c.wrap_tls()
        self.assertTrue(c.readline().startswith(b"+OK"))
        if tls == "starttls":
            c.send(b"STLS\r\n")
            self.assertTrue(c.readline().startswith(b"+OK"))
            c.wrap_tls()
        c.send(b"USER %s\r\n" % user.encode())
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"PASS %s\r\n" % USERS[user].encode())
        r = c.readline()
        self.assertTrue(r.startswith(b"+OK"), r)
        c.send(b"QUIT\r\n")
        c.readline()
        c.close()
        return off

    # -- the address reaches Dovecot

    def test_v1_imap_starttls(self):
        off = self.imap_login_via(proxy_v1("203.0.113.7", HOST, 50007, self.imap_port("starttls")),
                                  tls="starttls")
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "203.0.113.7")

    def test_v1_imap_implicit(self):
        off = self.imap_login_via(proxy_v1("203.0.113.8", HOST, 50008, self.imap_port("implicit")))
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "203.0.113.8")

    def test_v2_imap_implicit(self):
        off = self.imap_login_via(proxy_v2("198.51.100.23", HOST, 40023,
                                           self.imap_port("implicit")))
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "198.51.100.23")

    def test_v2_ipv6_imap(self):
        off = self.imap_login_via(proxy_v2("2001:db8::5", "2001:db8::1", 40024, 993),
                                  tls="starttls")
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "2001:db8::5")

    def test_v2_with_tlvs(self):
        # An ALPN TLV (0x01) and an authority TLV (0x02) are skipped.
        def tlv(kind, value):
            return struct.pack("!BH", kind, len(value)) + value
        tlvs = tlv(0x01, b"imap") + tlv(0x02, b"mail.example.test")
        off = self.imap_login_via(proxy_v2("198.51.100.24", HOST, 40025,
                                           self.imap_port("implicit"), tlvs=tlvs))
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "198.51.100.24")

    def test_v1_pop3(self):
        off = self.pop3_login_via(proxy_v1("203.0.113.9", HOST, 50009, self.pop3_port("starttls")),
                                  tls="starttls")
        self.assertEqual(self.dovecot.wait_login(BOB, "pop3", offset=off), "203.0.113.9")

    def test_v2_pop3(self):
        off = self.pop3_login_via(proxy_v2("198.51.100.77", HOST, 40077,
                                           self.pop3_port("implicit")))
        self.assertEqual(self.dovecot.wait_login(BOB, "pop3", offset=off), "198.51.100.77")

    def test_session_log_shows_proxy_address(self):
        self.imap_login_via(proxy_v1("203.0.113.99", HOST, 50099, self.imap_port("implicit")))
        self.postern.wait_log(r"203\.0\.113\.99")

    def test_header_split_across_writes(self):
        header = proxy_v2("198.51.100.31", HOST, 40031, self.imap_port("implicit"))
        off = self.dovecot.log_size()
        c = RawClient(self.imap_port("implicit"))
        for i in range(0, len(header), 5):
            c.send(header[i:i + 5])
            time.sleep(0.05)
        c.wrap_tls()
        self.assertTrue(c.readline().startswith(b"* OK"))
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.close()
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "198.51.100.31")

    # -- refusals

    def assertRefused(self, port, data, tls=False, close_timeout=PROMPT_S):
        """Sends data on a proxy listener; the gateway must close without a
        greeting and without ever starting a session that logs in."""
        c = RawClient(port)
        try:
            if data:
                c.send(data)
        except OSError:
            pass
        try:
            got = c.expect_closed(timeout=close_timeout)
        except socket.timeout:
            c.close()
            self.fail("connection not closed %ds after %r" % (close_timeout, data[:40]))
        c.close()
        self.assertNotIn(b"* OK", got)
        self.assertNotIn(b"+OK", got)

    def test_no_header_is_refused(self):
        self.assertRefused(self.imap_port("starttls"), b"a CAPABILITY\r\n")
        self.assertRefused(self.pop3_port("starttls"), b"CAPA\r\n")
        # nothing at all: closed by the pre-auth timeout, no greeting
        self.assertRefused(self.imap_port("starttls"), b"", close_timeout=TIMEOUT_CLOSE_S)
        # a TLS ClientHello instead of a header on the implicit listener
        c = socket.create_connection((HOST, self.imap_port("implicit")), timeout=30)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with self.assertRaises((ssl.SSLError, OSError)):
            s = ctx.wrap_socket(c, server_hostname="mail.example.test")
            s.recv(100)
        c.close()
        self.assertStillServes(self.postern.port("imap", "implicit"))
        self.imap_login_via(proxy_v1("203.0.113.10", HOST, 1, 2))

    def test_v2_lying_length_is_refused(self):
        port = self.imap_port("starttls")
        good = proxy_v2("198.51.100.40", HOST, 40040, port)
        # shorter than the IPv4 address block it announces
        self.assertRefused(port, proxy_v2("198.51.100.41", HOST, 1, 2, length=4) + b"a NOOP\r\n")
        # longer than any sane header: must not wait to buffer 64 KB
        self.assertRefused(port, proxy_v2("198.51.100.42", HOST, 1, 2, length=65535) +
                           b"a NOOP\r\n" * 10)
        # longer than what is sent, then the client stops: pre-auth timeout
        self.assertRefused(port, proxy_v2("198.51.100.43", HOST, 1, 2, length=200),
                           close_timeout=TIMEOUT_CLOSE_S)
        # an IPv6 family with an IPv4-sized block
        bad6 = bytearray(good)
        bad6[13] = 0x21
        self.assertRefused(port, bytes(bad6) + b"a NOOP\r\n")
        # a wrong version nibble
        badv = bytearray(good)
        badv[12] = 0x31
        self.assertRefused(port, bytes(badv))
        # the gateway still serves everyone else, on both kinds of listener
        self.assertStillServes(self.postern.port("imap", "implicit"))
        off = self.imap_login_via(good, tls="starttls")
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "198.51.100.40")

    def test_v1_garbage_is_refused(self):
        port = self.imap_port("starttls")
        for bad in (b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
                    b"PROXY TCP4 1.2.3.4 127.0.0.1 70000 2\r\n",
                    b"PROXY TCP9 1.2.3.4 127.0.0.1 1 2\r\n",
                    b"PROXY TCP4 1.2.3.4\r\n",
                    b"PROXY " + b"1" * 200 + b"\r\n"):
            self.assertRefused(port, bad + b"a NOOP\r\n")
        self.assertStillServes(self.postern.port("imap", "implicit"))

    def test_v2_local_uses_connection_address(self):
        # LOCAL (health checks from the balancer itself): no address block,
        # the connection's own addresses are used.
        header = PROXY_V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
        off = self.imap_login_via(header)
        self.assertEqual(self.dovecot.wait_login(ALICE, "imap", offset=off), "127.0.0.1")


class RportDovecot(Dovecot):
    """The harness's private Dovecot, with the remote port (%{rport}, the
    one it takes from ID x-originating-port or XCLIENT PORT when the
    connection comes from login_trusted_networks) in its login log line."""

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path, "a") as f:
            f.write("login_log_format_elements = user=<%u> method=%m rip=%r "
                    "rport=%{rport} lip=%l mpid=%e %c session=<%{session}>\n")


class ClientPortTest(GatewayTestCase):
    """The client's port, sent by postern as ID x-originating-port (IMAP)
    and XCLIENT PORT (POP3), is the port Dovecot logs: the PROXY header's
    source port on a PROXY listener, the client's own TCP port elsewhere
    (not postern's port towards Dovecot)."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = RportDovecot(name="dovecot-rport").start()
        try:
            cls.postern = Postern(cls.dovecot, name="postern-rport", listeners=[
                Listener("imap", "implicit", proxy_protocol=True),
                Listener("imap", "implicit"),
                Listener("pop3", "implicit", proxy_protocol=True)]).start()
        except Exception:
            cls.dovecot.stop()
            raise

    def rport(self, user, protocol, off):
        """(rip, rport) of the user's login that Dovecot logged since off."""
        m = self.dovecot.wait_log(r"%s-login: Info: Login: user=<%s>.*?\brip=([0-9a-fA-F.:]+),? "
                                  r"rport=(\d+)\b" % (protocol, user.replace(".", r"\.")),
                                  offset=off)
        return m.group(1), int(m.group(2))

    def imap_login(self, port, prefix=None):
        c = RawClient(port, prefix=prefix)
        own_port = c.sock.getsockname()[1]
        c.wrap_tls()
        self.assertTrue(c.readline().startswith(b"* OK"))
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        return c, own_port

    def test_imap_proxy_header_port(self):
        off = self.dovecot.log_size()
        c, _ = self.imap_login(self.postern.port("imap", "implicit", proxy_protocol=True),
                               proxy_v1("192.0.2.77", "192.0.2.1", 43210, 993))
        try:
            self.assertEqual(self.rport(ALICE, "imap", off), ("192.0.2.77", 43210))
        finally:
            c.cmd("z", "LOGOUT")
            c.close()
        off = self.dovecot.log_size()
        c, _ = self.imap_login(self.postern.port("imap", "implicit", proxy_protocol=True),
                               proxy_v2("2001:db8::5", "2001:db8::1", 61001, 993))
        try:
            self.assertEqual(self.rport(ALICE, "imap", off), ("2001:db8::5", 61001))
        finally:
            c.cmd("z", "LOGOUT")
            c.close()

    def test_imap_own_tcp_port(self):
        off = self.dovecot.log_size()
        c, own_port = self.imap_login(self.postern.port("imap", "implicit"))
        try:
            rip, rport = self.rport(ALICE, "imap", off)
            self.assertEqual(rip, "127.0.0.1")
            self.assertEqual(rport, own_port)
        finally:
            c.cmd("z", "LOGOUT")
            c.close()

    def test_pop3_proxy_header_port(self):
        off = self.dovecot.log_size()
        c = RawClient(self.postern.port("pop3", "implicit", proxy_protocol=True),
                      prefix=proxy_v1("198.51.100.9", "198.51.100.1", 50123, 995))
        c.wrap_tls()
        try:
            self.assertTrue(c.readline().startswith(b"+OK"))
            c.send(b"USER %s\r\n" % BOB.encode())
            self.assertTrue(c.readline().startswith(b"+OK"))
            c.send(b"PASS %s\r\n" % USERS[BOB].encode())
            r = c.readline()
            self.assertTrue(r.startswith(b"+OK"), r)
            self.assertEqual(self.rport(BOB, "pop3", off), ("198.51.100.9", 50123))
            c.send(b"QUIT\r\n")
            c.readline()
        finally:
            c.close()


class PenaltyTest(GatewayTestCase):
    """The failed-login penalty grows per client address -- the PROXY
    address. Dovecot itself answers a failure after about 0.5 s, so the
    penalty here is large enough to be told apart (initial 1 s, doubling,
    max 4 s). Lower bounds and one comparison only: never a speed check."""

    @classmethod
    def setUpClass(cls):
        cls.start_default(listeners=[Listener("imap", "implicit", proxy_protocol=True)],
                          auth_penalty={"initial_ms": 1000, "max_ms": 4000})

    def fail_login(self, client_ip, n):
        port = self.postern.port("imap", "implicit", proxy_protocol=True)
        c = RawClient(port, prefix=proxy_v1(client_ip, HOST, 41000 + n, port))
        c.wrap_tls()
        self.assertTrue(c.readline().startswith(b"* OK"))
        t0 = time.monotonic()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote("bad%d" % n)))
        elapsed = time.monotonic() - t0
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        c.close()
        return elapsed

    def test_penalty_grows_per_client_address(self):
        delays = [self.fail_login("192.0.2.177", i) for i in range(3)]
        self.assertGreaterEqual(delays[0], 0.95, "no penalty delay: %r" % delays)
        self.assertGreaterEqual(delays[2], 3.9, "penalty did not double: %r" % delays)
        # another client address starts from the initial delay
        other = self.fail_login("192.0.2.178", 9)
        self.assertGreaterEqual(other, 0.95)
        self.assertLess(other, delays[2], "penalty is not per client address")
        # a correct password from the penalised address is not refused
        port = self.postern.port("imap", "implicit", proxy_protocol=True)
        c = RawClient(port, prefix=proxy_v1("192.0.2.177", HOST, 41100, port))
        c.wrap_tls()
        c.readline()
        tagged, _ = c.cmd("b", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""IMAP through postern in front of a real Dovecot: STARTTLS and implicit TLS,
a 10 MB message, refusals by policy, live enforcement, wrong passwords,
LOGIN with literals, AUTHENTICATE PLAIN both ways, CAPABILITY, curl."""

import hashlib
import imaplib
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (USERS, GatewayTestCase, RawClient, Closed, imap_quote, imap_starttls,  # noqa: E402
                     imap_tls, make_big_message, make_message, main, pki, pop3_tls, sasl_plain)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
ERIN = "erin@example.com"

# The contract: a disabled protocol ends open sessions within 2 seconds
# (measured from the moment posternctl has written the change).
LIVE_BOUND_S = 2.0


def login_raw(port, user, tls=True):
    """A raw IMAP client over implicit TLS (or STARTTLS when tls='starttls'),
    logged in with LOGIN quoted strings. Returns the client."""
    if tls == "starttls":
        c = RawClient(port)
        c.readline()
        tagged, _ = c.cmd("s1", "STARTTLS")
        assert tagged.startswith(b"s1 OK"), tagged
        c.wrap_tls()
    else:
        c = RawClient(port, tls=True)
        greeting = c.readline()
        assert greeting.startswith(b"* OK"), greeting
    tagged, _ = c.cmd("l1", "LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
    assert tagged.startswith(b"l1 OK"), tagged
    return c


class ImapTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_default()
        cls.marker = {}
        for user in USERS:
            subj = "hello %s %d" % (user.split("@")[0], os.getpid())
            cls.dovecot.deliver(user, make_message(subject=subj, to=user))
            cls.marker[user] = subj

    def setUp(self):
        super().setUp()
        self.touched = set()
        self.starttls_port = self.postern.port("imap", "starttls")
        self.tls_port = self.postern.port("imap", "implicit")

    def tearDown(self):
        super().tearDown()
        for user in self.touched:
            self.postern.delete_user(user)
        if self.touched:
            time.sleep(self.postern.poll_ms / 1000.0 * 2)

    def disable(self, user, service="imap", message=None):
        self.touched.add(user)
        flags = {service: "off"}
        if message is not None:
            flags["message"] = message
        self.postern.set_user(user, **flags)

    def enable(self, user, service="imap"):
        self.touched.add(user)
        self.postern.set_user(user, **{service: "on"})

    # -- the allowed path

    def _list_select_fetch(self, c, user):
        typ, _ = c.login(user, USERS[user])
        self.assertEqual(typ, "OK")
        typ, boxes = c.list()
        self.assertEqual(typ, "OK")
        self.assertTrue(any(b"INBOX" in b for b in boxes), boxes)
        typ, data = c.select("INBOX")
        self.assertEqual(typ, "OK")
        self.assertGreaterEqual(int(data[0]), 1)
        typ, data = c.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertIn(self.marker[user].encode(), data[0][1])
        typ, _ = c.logout()
        self.assertEqual(typ, "BYE")

    def test_starttls_list_select_fetch(self):
        c = imap_starttls(self.starttls_port)
        self._list_select_fetch(c, ALICE)

    def test_implicit_tls_list_select_fetch(self):
        c = imap_tls(self.tls_port)
        self._list_select_fetch(c, ALICE)

    def test_ten_megabyte_message_byte_identical(self):
        user = ERIN
        big = make_big_message(10 * 1024 * 1024, subject="ten megabytes", to=user)
        self.dovecot.deliver(user, big)
        want = hashlib.sha256(big).hexdigest()
        for connect in (imap_tls, imap_starttls):
            port = self.tls_port if connect is imap_tls else self.starttls_port
            c = connect(port, timeout=120)
            c.login(user, USERS[user])
            typ, _ = c.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            typ, data = c.search(None, 'SUBJECT "ten megabytes"')
            self.assertEqual(typ, "OK")
            num = data[0].split()[-1].decode()
            typ, data = c.fetch(num, "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            got = data[0][1]
            self.assertEqual(len(got), len(big), "size differs via %s" % connect.__name__)
            self.assertEqual(hashlib.sha256(got).hexdigest(), want,
                             "content differs via %s" % connect.__name__)
            c.logout()

    def test_login_ok_carries_capabilities(self):
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        self.assertIn(b"[CAPABILITY ", tagged, "tagged OK should carry the backend's capabilities")
        self.assertIn(b"IDLE", tagged)
        tagged, _ = c.cmd("b", "NOOP")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.cmd("z", "LOGOUT")
        c.close()

    def test_idle_sees_new_mail(self):
        c = login_raw(self.tls_port, CAROL)
        tagged, _ = c.cmd("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        c.send(b"i IDLE\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        self.dovecot.deliver(CAROL, make_message(subject="while idling", to=CAROL))
        deadline = time.monotonic() + 30
        seen = False
        while time.monotonic() < deadline and not seen:
            line = c.readline(timeout=max(0.1, deadline - time.monotonic()))
            seen = re.match(rb"^\* \d+ EXISTS", line) is not None
        self.assertTrue(seen, "no EXISTS while idling")
        c.send(b"DONE\r\n")
        lines = c.read_until_tagged("i")
        self.assertTrue(lines[-1].startswith(b"i OK"), lines)
        c.cmd("z", "LOGOUT")
        c.close()

    def test_backend_logs_gateway_session_id(self):
        # postern forwards its session id (ID x-session-id); Dovecot logs it.
        off_p, off_d = self.postern.log_size(), self.dovecot.log_size()
        c = imap_tls(self.tls_port)
        port = c.sock.getsockname()[1]
        c.login(ALICE, USERS[ALICE])
        c.logout()
        m = self.postern.wait_log(r"session=([0-9a-f]{16})\b[^\n]*client=127\.0\.0\.1:%d\b"
                                  % port, offset=off_p)
        sid = m.group(1)
        self.dovecot.wait_log(r"Login: user=<alice@example\.com>.*session=<%s>" % sid,
                              offset=off_d)

    def test_curl_imaps(self):
        url = "imaps://127.0.0.1:%d/INBOX;UID=1" % self.tls_port
        r = subprocess.run(["curl", "-sS", "--max-time", "60", "--cacert", pki().ca_cert,
                            "-u", "%s:%s" % (ALICE, USERS[ALICE]), url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertIn(self.marker[ALICE].encode(), r.stdout)

    def test_curl_imap_starttls(self):
        url = "imap://127.0.0.1:%d/INBOX;UID=1" % self.starttls_port
        r = subprocess.run(["curl", "-sS", "--max-time", "60", "--ssl-reqd", "--cacert",
                            pki().ca_cert, "-u", "%s:%s" % (ALICE, USERS[ALICE]), url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertIn(self.marker[ALICE].encode(), r.stdout)

    # -- pre-auth

    def test_capability_before_and_after_starttls(self):
        c = RawClient(self.starttls_port)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        _, lines = c.cmd("a", "CAPABILITY")
        caps = b" ".join(l for l in lines if l.startswith(b"* CAPABILITY")).upper().split()
        self.assertIn(b"STARTTLS", caps)
        self.assertIn(b"LOGINDISABLED", caps)
        self.assertTrue(lines[-1].startswith(b"a OK"), lines[-1])
        # LOGIN before TLS is refused on a listener without plaintext_auth.
        tagged, _ = c.cmd("b", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertFalse(tagged.startswith(b"b OK"), tagged)
        tagged, _ = c.cmd("c", "STARTTLS")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        c.wrap_tls()
        _, lines = c.cmd("d", "CAPABILITY")
        caps = b" ".join(l for l in lines if l.startswith(b"* CAPABILITY")).upper().split()
        self.assertNotIn(b"LOGINDISABLED", caps)
        self.assertNotIn(b"STARTTLS", caps)
        for cap in (b"IMAP4REV1", b"AUTH=PLAIN", b"SASL-IR", b"ID", b"LITERAL+"):
            self.assertIn(cap, caps)
        c.close()

    def test_noop_id_logout_before_login(self):
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "NOOP")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, lines = c.cmd("b", 'ID ("name" "postern-test" "version" "1")')
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        self.assertTrue(any(l.startswith(b"* ID ") for l in lines), lines)
        tagged, lines = c.cmd("c", "LOGOUT")
        self.assertTrue(any(l.startswith(b"* BYE") for l in lines), lines)
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        c.expect_closed(timeout=15)

    # -- LOGIN forms

    def test_login_quoted_string_with_escapes(self):
        # erin's password has a space and double quotes.
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ERIN), imap_quote(USERS[ERIN])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()

    def test_login_synchronising_literals(self):
        user, pw = ERIN.encode(), USERS[ERIN].encode()
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        c.send(b"a LOGIN {%d}\r\n" % len(user))
        cont = c.readline()
        self.assertTrue(cont.startswith(b"+"), cont)
        c.send(user + b" {%d}\r\n" % len(pw))
        cont = c.readline()
        self.assertTrue(cont.startswith(b"+"), cont)
        c.send(pw + b"\r\n")
        lines = c.read_until_tagged("a")
        self.assertTrue(lines[-1].startswith(b"a OK"), lines)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()

    def test_login_non_synchronising_literals(self):
        user, pw = ALICE.encode(), USERS[ALICE].encode()
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        # All in one write: LITERAL+ needs no continuation.
        c.send(b"a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\nb NOOP\r\n" % (len(user), user, len(pw), pw))
        lines = c.read_until_tagged("a")
        self.assertFalse(any(l.startswith(b"+") for l in lines), lines)
        self.assertTrue(lines[-1].startswith(b"a OK"), lines)
        # the pipelined NOOP after the login reaches Dovecot through the relay
        lines = c.read_until_tagged("b")
        self.assertTrue(lines[-1].startswith(b"b OK"), lines)
        c.close()

    def test_login_mixed_quoted_and_literal(self):
        pw = USERS[ERIN].encode()
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        c.send(b"a LOGIN " + imap_quote(ERIN).encode() + b" {%d}\r\n" % len(pw))
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(pw + b"\r\n")
        lines = c.read_until_tagged("a")
        self.assertTrue(lines[-1].startswith(b"a OK"), lines)
        c.close()

    # -- AUTHENTICATE PLAIN

    def test_authenticate_plain_sasl_ir(self):
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "AUTHENTICATE PLAIN " + sasl_plain(ALICE, USERS[ALICE]))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()

    def test_authenticate_plain_continuation(self):
        c = RawClient(self.starttls_port)
        c.readline()
        c.cmd("s", "STARTTLS")
        c.wrap_tls()
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        cont = c.readline()
        self.assertTrue(cont.startswith(b"+"), cont)
        c.send(sasl_plain(ERIN, USERS[ERIN]).encode() + b"\r\n")
        lines = c.read_until_tagged("a")
        self.assertTrue(lines[-1].startswith(b"a OK"), lines)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()

    def test_authenticate_plain_wrong_and_cancel(self):
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "AUTHENTICATE PLAIN " + sasl_plain(ALICE, "not-the-password"))
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        c.send(b"b AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"*\r\n")
        lines = c.read_until_tagged("b")
        self.assertTrue(lines[-1].startswith(b"b BAD") or lines[-1].startswith(b"b NO"),
                        lines)
        tagged, _ = c.cmd("c", "AUTHENTICATE PLAIN " + sasl_plain(ALICE, USERS[ALICE]))
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        c.close()

    # -- refusals

    def test_wrong_password(self):
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        t0 = time.monotonic()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote("wrong-password-1")))
        elapsed = time.monotonic() - t0
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        # Not immediate (Dovecot's own delay plus postern's penalty; the
        # penalty itself is measured in test_proxy.PenaltyTest).
        self.assertGreaterEqual(elapsed, 0.09, "a failed login was answered at once")
        # The same connection may try again and succeed.
        tagged, _ = c.cmd("b", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.close()
        # imaplib sees it the same way
        c = imap_tls(self.tls_port)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            c.login(BOB, "wrong-password-2")
        self.assertIn("AUTHENTICATIONFAILED", str(cm.exception))
        c.shutdown()
        # passwords never reach postern's log
        time.sleep(0.5)
        text = self.postern.log_text()
        for secret in ("wrong-password-1", "wrong-password-2", USERS[ALICE]):
            self.assertNotIn(secret, text, "a password appears in postern's log")

    def test_too_many_auth_failures_close(self):
        # limits.auth_failures = 3: the connection closes after the third.
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        closed = False
        for i in range(5):
            try:
                c.send(b"a%d LOGIN %s %s\r\n" % (i, ALICE.encode(), b"bad%d" % i))
                c.read_until_tagged("a%d" % i)
            except (Closed, OSError):
                closed = True
                break
        if not closed:
            c.expect_closed(timeout=15)
        c.close()

    def test_disabled_user_contactadmin(self):
        msg = "IMAP is off for bob, ask the helpdesk"
        self.disable(BOB, "imap", msg)
        c = RawClient(self.tls_port, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(BOB), imap_quote(USERS[BOB])))
        self.assertTrue(tagged.startswith(b"a NO [CONTACTADMIN]"), tagged)
        self.assertIn(msg.encode(), tagged)
        c.close()
        # imaplib, over STARTTLS, AUTHENTICATE path too
        c = imap_starttls(self.starttls_port)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            c.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (BOB, USERS[BOB])).encode())
        self.assertIn("CONTACTADMIN", str(cm.exception))
        c.shutdown()
        # a disabled user with a wrong password learns nothing about the policy
        c = imap_tls(self.tls_port)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            c.login(BOB, "wrong")
        self.assertIn("AUTHENTICATIONFAILED", str(cm.exception))
        c.shutdown()
        # others are not affected
        c = imap_tls(self.tls_port)
        self.assertEqual(c.login(ALICE, USERS[ALICE])[0], "OK")
        c.logout()

    def test_flag_change_applies_to_next_login(self):
        c = imap_tls(self.tls_port)
        self.assertEqual(c.login(CAROL, USERS[CAROL])[0], "OK")
        c.logout()
        self.disable(CAROL, "imap", "carol is off")
        c = imap_tls(self.tls_port)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            c.login(CAROL, USERS[CAROL])
        self.assertIn("CONTACTADMIN", str(cm.exception))
        c.shutdown()
        self.enable(CAROL, "imap")
        c = imap_tls(self.tls_port)
        self.assertEqual(c.login(CAROL, USERS[CAROL])[0], "OK")
        c.logout()
        # pop3 being off does not refuse imap
        self.disable(CAROL, "pop", "no pop for carol")
        c = imap_tls(self.tls_port)
        self.assertEqual(c.login(CAROL, USERS[CAROL])[0], "OK")
        c.logout()

    def test_live_disable_ends_sessions_with_bye(self):
        user = DAVE
        selected = login_raw(self.tls_port, user)
        tagged, _ = selected.cmd("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        idling = login_raw(self.starttls_port, user, tls="starttls")
        idling.cmd("s", "SELECT INBOX")
        idling.send(b"i IDLE\r\n")
        self.assertTrue(idling.readline().startswith(b"+"))
        other = login_raw(self.tls_port, ALICE)
        other.cmd("s", "SELECT INBOX")
        pop = pop3_tls(self.postern.port("pop3", "implicit"))
        pop.user(user)
        pop.pass_(USERS[user])

        # Watch both of dave's IMAP sessions at once, each in its own thread.
        results = {}

        def watch(name, c):
            try:
                data = c.expect_closed(timeout=15)
                results[name] = (time.monotonic(), data)
            except socket.timeout:
                results[name] = (None, b"")

        watchers = [threading.Thread(target=watch, args=(n, c))
                    for n, c in (("selected", selected), ("idling", idling))]
        for w in watchers:
            w.start()
        msg = "dave's IMAP was switched off just now"
        self.disable(user, "imap", msg)
        t0 = time.monotonic()
        for w in watchers:
            w.join(30)
        for name in ("selected", "idling"):
            closed_at, data = results[name]
            self.assertIsNotNone(closed_at, "%s session of %s still open 15 s after the change"
                                 % (name, user))
            m = re.search(rb"^\* BYE \[CONTACTADMIN\][^\r\n]*", data, re.M)
            self.assertIsNotNone(m, "%s session: no '* BYE [CONTACTADMIN]' in %r" %
                                 (name, data[-300:]))
            self.assertIn(msg.encode(), m.group(0))
            self.assertLessEqual(closed_at - t0, LIVE_BOUND_S,
                                 "%s session ended %.2f s after the change" %
                                 (name, closed_at - t0))
        # alice's IMAP and dave's POP3 stay up
        tagged, _ = other.cmd("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        tagged, _ = other.cmd("f", "FETCH 1 (FLAGS)")
        self.assertTrue(tagged.startswith(b"f OK"), tagged)
        self.assertTrue(pop.stat()[0] >= 1)
        pop.quit()
        other.cmd("z", "LOGOUT")
        other.close()
        # and dave's next IMAP login is refused
        c = imap_tls(self.tls_port)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            c.login(user, USERS[user])
        self.assertIn("CONTACTADMIN", str(cm.exception))
        c.shutdown()

    def test_live_disable_mid_fetch_bye_after_literal(self):
        """Switched off while a 10 MB FETCH literal is on its way: the
        literal arrives whole, then '* BYE [CONTACTADMIN] <message>', then
        the connection closes."""
        user = BOB
        subj = "live disable mid-fetch %d" % os.getpid()
        big = make_big_message(10 * 1024 * 1024, subject=subj, to=user)
        self.dovecot.deliver(user, big)
        c = RawClient(self.starttls_port, timeout=60)
        # A small receive window: the relay (and with it the gateway's view
        # of the response) stays far behind the end of the literal while
        # this client does not read.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.assertTrue(c.readline().startswith(b"* OK"))
        tagged, _ = c.cmd("s1", "STARTTLS")
        self.assertTrue(tagged.startswith(b"s1 OK"), tagged)
        c.wrap_tls()
        tagged, _ = c.cmd("l1", "LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
        self.assertTrue(tagged.startswith(b"l1 OK"), tagged)
        tagged, _ = c.cmd("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        tagged, lines = c.cmd("q", 'SEARCH SUBJECT "%s"' % subj)
        self.assertTrue(tagged.startswith(b"q OK"), tagged)
        num = [l for l in lines if l.startswith(b"* SEARCH")][0].split()[-1].decode()
        c.send("f FETCH %s (BODY.PEEK[])\r\n" % num)
        head = c.readline()
        m = re.match(rb"^\* %s FETCH \(BODY\[\] \{(\d+)\}\r\n$" % num.encode(), head)
        self.assertIsNotNone(m, head)
        size = int(m.group(1))
        self.assertEqual(size, len(big))
        # The first megabyte, then stop reading.
        while len(c.buf) < 1024 * 1024:
            c._fill(30)

        offset = self.postern.log_size()
        kicks = self.postern.metrics().get('postern_policy_kicks_total{protocol="imap"}', 0)
        msg = "bob's IMAP was switched off during a download"
        self.disable(user, "imap", msg)
        t0 = time.monotonic()
        # The gateway saw the change in the middle of the literal (it
        # cannot have read the whole message: this client holds it back).
        self.postern.wait_log(r"proto=imap state=relay->bye-pending", timeout=10,
                              offset=offset)
        try:
            data = c.expect_closed(timeout=15)
        except socket.timeout:
            self.fail("session of %s still open 15 s after the change" % user)
        closed_at = time.monotonic()
        c.sock.close()
        self.assertGreaterEqual(len(data), size, "literal cut short: %d of %d bytes"
                                % (len(data), size))
        self.assertEqual(hashlib.sha256(data[:size]).hexdigest(),
                         hashlib.sha256(big).hexdigest(), "literal content differs")
        rest = data[size:]
        # The end of the FETCH response, the BYE, nothing after it.
        m = re.match(rb"^[^\r\n]*\)\r\n\* BYE \[CONTACTADMIN\] ([^\r\n]*)\r\n$", rest)
        self.assertIsNotNone(m, "after the literal: %r" % rest[:500])
        self.assertEqual(m.group(1), msg.encode())
        self.assertLessEqual(closed_at - t0, LIVE_BOUND_S,
                             "session ended %.2f s after the change" % (closed_at - t0))
        # The session's record says who ended it.
        self.postern.wait_log(r"user=%s [^\n]*close=policy" % re.escape(user), timeout=10,
                              offset=offset)
        # ... and the kick is counted, though the front closed it later
        # than the policy change itself
        self.assertEqual(
            self.postern.metrics().get('postern_policy_kicks_total{protocol="imap"}', 0),
            kicks + 1)


if __name__ == "__main__":
    main()

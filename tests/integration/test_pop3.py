#!/usr/bin/env python3
"""POP3 through postern in front of a real Dovecot: STLS and implicit TLS,
CAPA, USER/PASS and AUTH PLAIN, RETR, refusals and live enforcement."""

import hashlib
import os
import poplib
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (USERS, GatewayTestCase, RawClient, imap_tls, make_big_message,  # noqa: E402
                     make_message, main, pop3_stls, pop3_tls, sasl_plain)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
ERIN = "erin@example.com"

LIVE_BOUND_S = 2.0


def pop_raw(port, tls=True):
    c = RawClient(port, tls=tls)
    greeting = c.readline()
    assert greeting.startswith(b"+OK"), greeting
    return c


def pop_cmd(c, line):
    c.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
    return c.readline()


def pop_multiline(c):
    lines = []
    while True:
        line = c.readline()
        if line == b".\r\n":
            return lines
        lines.append(line)


class Pop3Test(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_default()
        cls.marker = {}
        for user in USERS:
            subj = "pop hello %s %d" % (user.split("@")[0], os.getpid())
            cls.dovecot.deliver(user, make_message(subject=subj, to=user))
            cls.marker[user] = subj

    def setUp(self):
        super().setUp()
        self.touched = set()
        self.stls_port = self.postern.port("pop3", "starttls")
        self.tls_port = self.postern.port("pop3", "implicit")

    def tearDown(self):
        super().tearDown()
        for user in self.touched:
            self.postern.delete_user(user)
        if self.touched:
            time.sleep(self.postern.poll_ms / 1000.0 * 2)

    def disable(self, user, service="pop", message=None):
        self.touched.add(user)
        flags = {service: "off"}
        if message is not None:
            flags["message"] = message
        self.postern.set_user(user, **flags)

    def enable(self, user, service="pop"):
        self.touched.add(user)
        self.postern.set_user(user, **{service: "on"})

    def _retr(self, p, user):
        p.user(user)
        resp = p.pass_(USERS[user])
        self.assertTrue(resp.startswith(b"+OK"), resp)
        count, _ = p.stat()
        self.assertGreaterEqual(count, 1)
        found = False
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            if any(self.marker[user].encode() in l for l in lines):
                found = True
        self.assertTrue(found, "marker message not found")
        self.assertTrue(p.quit().startswith(b"+OK"))

    def test_stls_retr(self):
        self._retr(pop3_stls(self.stls_port), ALICE)

    def test_pop3s_retr(self):
        self._retr(pop3_tls(self.tls_port), ALICE)

    def test_capa_before_and_after_stls(self):
        c = pop_raw(self.stls_port, tls=False)
        self.assertTrue(pop_cmd(c, "CAPA").startswith(b"+OK"))
        caps = [l.strip().upper() for l in pop_multiline(c)]
        for cap in (b"STLS", b"RESP-CODES", b"AUTH-RESP-CODE"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"USER", caps, "USER offered before STLS")
        self.assertFalse(any(l.startswith(b"SASL") and b"PLAIN" in l for l in caps),
                         "SASL PLAIN offered before STLS")
        # USER before TLS is refused
        self.assertTrue(pop_cmd(c, "USER %s" % ALICE).startswith(b"-ERR"))
        self.assertTrue(pop_cmd(c, "STLS").startswith(b"+OK"))
        c.wrap_tls()
        self.assertTrue(pop_cmd(c, "CAPA").startswith(b"+OK"))
        caps = [l.strip().upper() for l in pop_multiline(c)]
        self.assertIn(b"USER", caps)
        self.assertTrue(any(l.startswith(b"SASL") and b"PLAIN" in l for l in caps), caps)
        self.assertNotIn(b"STLS", caps)
        self.assertTrue(pop_cmd(c, "QUIT").startswith(b"+OK"))
        c.close()

    def test_auth_plain_initial_response(self):
        c = pop_raw(self.tls_port)
        r = pop_cmd(c, "AUTH PLAIN " + sasl_plain(ERIN, USERS[ERIN]))
        self.assertTrue(r.startswith(b"+OK"), r)
        r = pop_cmd(c, "STAT")
        self.assertTrue(r.startswith(b"+OK"), r)
        pop_cmd(c, "QUIT")
        c.close()

    def test_auth_plain_continuation(self):
        c = pop_raw(self.tls_port)
        r = pop_cmd(c, "AUTH PLAIN")
        self.assertTrue(r.startswith(b"+"), r)
        r = pop_cmd(c, sasl_plain(ERIN, USERS[ERIN]))
        self.assertTrue(r.startswith(b"+OK"), r)
        r = pop_cmd(c, "STAT")
        self.assertTrue(r.startswith(b"+OK"), r)
        pop_cmd(c, "QUIT")
        c.close()

    def test_ten_megabyte_retr_byte_identical(self):
        user = BOB
        big = make_big_message(10 * 1024 * 1024, subject="pop ten megabytes", to=user)
        self.dovecot.deliver(user, big)
        p = pop3_tls(self.tls_port, timeout=120)
        p.user(user)
        p.pass_(USERS[user])
        count, _ = p.stat()
        got = None
        for i in range(count, 0, -1):
            _, lines, _ = p.retr(i)
            if any(b"pop ten megabytes" in l for l in lines[:20]):
                got = b"\r\n".join(lines) + b"\r\n"
                break
        p.quit()
        self.assertIsNotNone(got, "10 MB message not found")
        self.assertEqual(len(got), len(big))
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(big).hexdigest())

    def test_wrong_password(self):
        c = pop_raw(self.tls_port)
        self.assertTrue(pop_cmd(c, "USER %s" % ALICE).startswith(b"+OK"))
        r = pop_cmd(c, "PASS not-the-password")
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        r = pop_cmd(c, "AUTH PLAIN " + sasl_plain(ALICE, "also-wrong"))
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        c.close()
        p = pop3_stls(self.stls_port)
        p.user(ALICE)
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_("wrong-again")
        self.assertIn(b"[AUTH]", cm.exception.args[0])
        p.close()

    def test_disabled_user_sys_perm(self):
        msg = "POP3 is off for carol, use IMAP"
        self.disable(CAROL, "pop", msg)
        c = pop_raw(self.tls_port)
        self.assertTrue(pop_cmd(c, "USER %s" % CAROL).startswith(b"+OK"))
        r = pop_cmd(c, "PASS %s" % USERS[CAROL])
        self.assertTrue(r.startswith(b"-ERR [SYS/PERM]"), r)
        self.assertIn(msg.encode(), r)
        c.close()
        c = pop_raw(self.tls_port)
        r = pop_cmd(c, "AUTH PLAIN " + sasl_plain(CAROL, USERS[CAROL]))
        self.assertTrue(r.startswith(b"-ERR [SYS/PERM]"), r)
        c.close()
        # a wrong password is still [AUTH], not a policy answer
        c = pop_raw(self.tls_port)
        pop_cmd(c, "USER %s" % CAROL)
        r = pop_cmd(c, "PASS wrong")
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        c.close()
        # IMAP for carol is untouched
        i = imap_tls(self.postern.port("imap", "implicit"))
        self.assertEqual(i.login(CAROL, USERS[CAROL])[0], "OK")
        i.logout()

    def test_flag_change_applies_to_next_login(self):
        self._retr(pop3_tls(self.tls_port), DAVE)
        self.disable(DAVE, "pop", "dave pop off")
        p = pop3_tls(self.tls_port)
        p.user(DAVE)
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_(USERS[DAVE])
        self.assertIn(b"[SYS/PERM]", cm.exception.args[0])
        p.close()
        self.enable(DAVE, "pop")
        self._retr(pop3_tls(self.tls_port), DAVE)

    def test_live_disable_closes_session(self):
        user = ERIN
        kicked = pop3_tls(self.tls_port)
        kicked.user(user)
        kicked.pass_(USERS[user])
        kicked.stat()
        other = pop3_stls(self.stls_port)
        other.user(ALICE)
        other.pass_(USERS[ALICE])
        imap = imap_tls(self.postern.port("imap", "implicit"))
        imap.login(user, USERS[user])
        imap.select("INBOX")

        result = {}

        def watch():
            sock = kicked.sock
            sock.settimeout(15)
            try:
                while True:
                    data = sock.recv(4096)
                    if not data:
                        break
            except socket.timeout:
                result["closed_at"] = None
                return
            except OSError:
                pass
            result["closed_at"] = time.monotonic()

        w = threading.Thread(target=watch)
        w.start()
        self.disable(user, "pop", "erin's POP3 was switched off")
        t0 = time.monotonic()
        w.join(30)
        self.assertIsNotNone(result.get("closed_at"), "POP3 session still open 15 s after the change")
        self.assertLessEqual(result["closed_at"] - t0, LIVE_BOUND_S,
                             "session ended %.2f s after the change" % (result["closed_at"] - t0))
        kicked.close()
        # the others stay up
        self.assertGreaterEqual(other.stat()[0], 1)
        other.quit()
        self.assertEqual(imap.noop()[0], "OK")
        imap.logout()


if __name__ == "__main__":
    main()

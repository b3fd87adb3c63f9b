#!/usr/bin/env python3
"""Operating postern: /healthz and /metrics, the session log line, SIGHUP
reload with open sessions, SIGTERM drain, `postern -t` on good and bad
configs, SNI certificate choice seen by `openssl s_client`."""

import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, GatewayTestCase, Postern, RawClient, imap_quote,  # noqa: E402
                     imap_tls, main, make_message, metric_sum, pki, pop3_tls, port_accepts, wait_for)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"


def s_client(port, servername=None, starttls=None, timeout=60):
    """Runs openssl s_client against port; returns its output (text)."""
    args = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port), "-CAfile", pki().ca_cert]
    if servername:
        args += ["-servername", servername, "-verify_hostname", servername]
    else:
        args += ["-noservername"]
    if starttls:
        args += ["-starttls", starttls]
    r = subprocess.run(args, input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.stdout.decode("utf-8", "replace")


def peer_cn(out):
    m = re.search(r"^subject=.*?CN\s*=\s*([^,\n/]+)", out, re.M)
    return m.group(1).strip() if m else None


def tls_peer_cn(port):
    ctx = ssl.create_default_context(cafile=pki().ca_cert)
    ctx.check_hostname = False
    with socket.create_connection((HOST, port), timeout=30) as s:
        with ctx.wrap_socket(s) as t:
            cert = t.getpeercert()
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


class AdminTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_default()
        for user in USERS:
            cls.dovecot.deliver(user, make_message(subject="admin test", to=user))

    def setUp(self):
        super().setUp()
        self.touched = set()

    def tearDown(self):
        super().tearDown()
        for u in self.touched:
            self.postern.delete_user(u)

    # -- admin HTTP

    def test_healthz(self):
        status, body = self.postern.http_get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body.strip(), "ok")

    def test_unknown_admin_path(self):
        status, _ = self.postern.http_get("/no-such-page")
        self.assertEqual(status, 404)

    def test_metrics_move_after_logins(self):
        imaps = self.postern.port("imap", "implicit")
        m0 = self.postern.metrics()
        c = imap_tls(imaps)
        c.login(ALICE, USERS[ALICE])
        c.select("INBOX")
        c.logout()
        c = imap_tls(imaps)
        try:
            c.login(ALICE, "wrong")
        except Exception:
            pass
        c.shutdown()
        self.touched.add(BOB)
        self.postern.set_user(BOB, imap="off", message="bob imap off")
        c = imap_tls(imaps)
        try:
            c.login(BOB, USERS[BOB])
        except Exception:
            pass
        c.shutdown()
        p = pop3_tls(self.postern.port("pop3", "implicit"))
        p.user(CAROL)
        p.pass_(USERS[CAROL])
        p.quit()

        def moved():
            m1 = self.postern.metrics()
            checks = {
                "imap allowed": (("postern_logins_total",), dict(protocol="imap",
                                                                 result="allowed")),
                "imap auth-failed": (("postern_logins_total",), dict(protocol="imap",
                                                                     result="auth-failed")),
                "imap refused": (("postern_logins_total",), dict(protocol="imap",
                                                                 result="refused")),
                "pop3 allowed": (("postern_logins_total",), dict(protocol="pop3",
                                                                 result="allowed")),
                "imap sessions": (("postern_sessions_total",), dict(protocol="imap")),
                "pop3 sessions": (("postern_sessions_total",), dict(protocol="pop3")),
            }
            missing = [k for k, ((name,), labels) in checks.items()
                       if metric_sum(m1, name, **labels) <= metric_sum(m0, name, **labels)]
            return missing

        deadline = time.monotonic() + 10
        missing = moved()
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            missing = moved()
        self.assertEqual(missing, [], "counters that did not move: %s\n/metrics:\n%s" %
                         (missing, self.postern.http_get("/metrics")[1]))

    def test_refusal_counter_has_reason_label(self):
        """A disabled user's login moves postern_logins_total with
        result="refused" and the decision's reason as a label
        (reason="imap-disabled", reason="pop-disabled"), and only that
        series among the refusals."""
        self.touched.add(CAROL)
        self.postern.set_user(CAROL, imap="off", pop="off", message="carol is off")
        key = "postern_logins_total"
        m0 = self.postern.metrics()
        c = imap_tls(self.postern.port("imap", "implicit"))
        try:
            with self.assertRaises(Exception) as cm:
                c.login(CAROL, USERS[CAROL])
            self.assertIn("CONTACTADMIN", str(cm.exception))
        finally:
            c.shutdown()
        p = pop3_tls(self.postern.port("pop3", "implicit"))
        try:
            p.user(CAROL)
            with self.assertRaises(Exception) as cm:
                p.pass_(USERS[CAROL])
            self.assertIn("SYS/PERM", str(cm.exception))
        finally:
            p.close()

        def delta(m1, **labels):
            return metric_sum(m1, key, **labels) - metric_sum(m0, key, **labels)

        def moved():
            m1 = self.postern.metrics()
            return m1 if (delta(m1, protocol="imap", result="refused",
                                reason="imap-disabled") >= 1 and
                          delta(m1, protocol="pop3", result="refused",
                                reason="pop-disabled") >= 1) else None

        m1 = wait_for(moved, 10, what="refusal counters with reason labels")
        self.assertEqual(delta(m1, protocol="imap", result="refused", reason="imap-disabled"), 1)
        self.assertEqual(delta(m1, protocol="pop3", result="refused", reason="pop-disabled"), 1)
        # the refusals are not counted under another reason
        self.assertEqual(delta(m1, protocol="imap", result="refused"), 1)
        self.assertEqual(delta(m1, protocol="pop3", result="refused"), 1)
        # the exposition line itself, as Prometheus reads it
        body = self.postern.http_get("/metrics")[1]
        self.assertRegex(body, r'(?m)^postern_logins_total\{protocol="imap",result="refused",'
                               r'reason="imap-disabled"\} [1-9][0-9]*$')

    # -- logs

    def test_session_log_line(self):
        off = self.postern.log_size()
        c = imap_tls(self.postern.port("imap", "implicit"))
        c.login(ALICE, USERS[ALICE])
        c.select("INBOX")
        c.logout()

        def line():
            for l in self.postern.log_text(off).splitlines():
                if ALICE in l and "reason=" in l and "duration" in l:
                    return l
            return None

        l = wait_for(line, 15, what="a session log line for alice")
        for field in ("session=", "user=", "result=", "reason=", "127.0.0.1", "imap"):
            self.assertIn(field, l)
        self.assertRegex(l, r"bytes")
        self.assertNotIn(USERS[ALICE], self.postern.log_text())

    # -- SNI

    def test_sni_picks_certificate(self):
        port = self.postern.port("imap", "implicit")
        out = s_client(port, "other.example.test")
        self.assertEqual(peer_cn(out), "other.example.test", out[-2000:])
        self.assertIn("Verify return code: 0 (ok)", out)
        out = s_client(port, "mail.example.test")
        self.assertEqual(peer_cn(out), "mail.example.test", out[-2000:])
        self.assertIn("Verify return code: 0 (ok)", out)
        out = s_client(port, None)
        self.assertEqual(peer_cn(out), "mail.example.test", out[-2000:])
        out = s_client(port, "unknown.example.test")
        self.assertEqual(peer_cn(out), "mail.example.test", out[-2000:])

    def test_sni_after_starttls(self):
        out = s_client(self.postern.port("imap", "starttls"), "other.example.test",
                       starttls="imap")
        self.assertEqual(peer_cn(out), "other.example.test", out[-2000:])
        out = s_client(self.postern.port("pop3", "starttls"), "other.example.test",
                       starttls="pop3")
        self.assertEqual(peer_cn(out), "other.example.test", out[-2000:])

    # -- SIGHUP

    def test_sighup_keeps_open_sessions(self):
        imaps = self.postern.port("imap", "implicit")
        c = RawClient(imaps, tls=True)
        c.readline()
        tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        tagged, _ = c.cmd("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        pre = RawClient(imaps, tls=True)     # a pre-auth session, too
        pre.readline()
        p = pop3_tls(self.postern.port("pop3", "implicit"))
        p.user(BOB)
        p.pass_(USERS[BOB])
        try:
            # a changed config (other timeouts and limits), reloaded a few times
            self.postern.timeouts["idle"] = 1900
            self.postern.limits["bad_commands"] = 12
            self.postern.write_config()
            off = self.postern.log_size()
            for _ in range(3):
                self.postern.reload()
                time.sleep(0.3)
            self.postern.wait_log(r"reload", timeout=10, offset=off)
            time.sleep(0.5)
            self.assertTrue(self.postern.running(), "postern exited on SIGHUP")
            tagged, _ = c.cmd("c", "NOOP")
            self.assertTrue(tagged.startswith(b"c OK"), tagged)
            tagged, lines = c.cmd("d", "FETCH 1 (FLAGS)")
            self.assertTrue(tagged.startswith(b"d OK"), tagged)
            tagged, _ = pre.cmd("e", "LOGIN %s %s" % (imap_quote(ALICE),
                                                     imap_quote(USERS[ALICE])))
            self.assertTrue(tagged.startswith(b"e OK"), tagged)
            self.assertGreaterEqual(p.stat()[0], 1)
            p.quit()
            n = imap_tls(imaps)
            self.assertEqual(n.login(ALICE, USERS[ALICE])[0], "OK")
            n.logout()
        finally:
            self.postern.timeouts["idle"] = 1860
            self.postern.limits["bad_commands"] = 10
            self.postern.write_config()
            self.postern.reload()
            time.sleep(0.5)
        c.close()
        pre.close()

    def test_sighup_applies_config_message(self):
        # messages.disabled is the text for users refused without a message
        # of their own; SIGHUP reloads it.
        self.touched.add(CAROL)
        self.postern.set_user(CAROL, imap="off")
        imaps = self.postern.port("imap", "implicit")
        try:
            text = self.postern.config_text().replace(
                "access is disabled for this account", "is switched off after the reload")
            self.assertIn("is switched off after the reload", text)
            with open(self.postern.conf_path, "w") as f:
                f.write(text)
            off = self.postern.log_size()
            self.postern.reload()
            self.postern.wait_log(r"reload", timeout=10, offset=off)
            time.sleep(0.5)
            r = RawClient(imaps, tls=True)
            r.readline()
            tagged, _ = r.cmd("f", "LOGIN %s %s" % (imap_quote(CAROL), imap_quote(USERS[CAROL])))
            r.close()
            self.assertTrue(tagged.startswith(b"f NO [CONTACTADMIN]"), tagged)
            self.assertIn(b"IMAP is switched off after the reload", tagged)
        finally:
            self.postern.write_config()
            self.postern.reload()
            time.sleep(0.5)

    def test_sighup_reloads_certificates(self):
        imaps = self.postern.port("imap", "implicit")
        self.assertEqual(tls_peer_cn(imaps), "mail.example.test")
        c = imap_tls(imaps)
        c.login(ALICE, USERS[ALICE])
        c.select("INBOX")
        certs = self.postern.certificates
        try:
            # the other certificate becomes the default
            self.postern.certificates = [
                {"cert": pki().other_cert, "key": pki().other_key},
                {"cert": pki().cert, "key": pki().key, "names": ["mail.example.test"]},
            ]
            self.postern.write_config()
            self.postern.reload()
            wait_for(lambda: tls_peer_cn(imaps) == "other.example.test", 15,
                     interval=0.3, what="the new default certificate after SIGHUP")
            self.assertEqual(c.noop()[0], "OK")
        finally:
            self.postern.certificates = certs
            self.postern.write_config()
            self.postern.reload()
        wait_for(lambda: tls_peer_cn(imaps) == "mail.example.test", 15, interval=0.3,
                 what="the original certificate after SIGHUP")
        self.assertEqual(c.noop()[0], "OK")
        c.logout()

    def test_sighup_with_broken_config_keeps_running(self):
        c = imap_tls(self.postern.port("imap", "implicit"))
        c.login(ALICE, USERS[ALICE])
        try:
            with open(self.postern.conf_path, "a") as f:
                f.write("this is not { valid libconfig\n")
            self.postern.reload()
            time.sleep(1.5)
            self.assertTrue(self.postern.running(), "a bad config on SIGHUP stopped postern")
            self.assertEqual(c.noop()[0], "OK")
            n = imap_tls(self.postern.port("imap", "implicit"))
            self.assertEqual(n.login(BOB, USERS[BOB])[0], "OK")
            n.logout()
        finally:
            self.postern.write_config()
            self.postern.reload()
        c.logout()

    # -- SIGTERM

    def test_sigterm_drains_then_exits(self):
        pg = Postern(self.dovecot, name="postern-drain", timeouts={"drain": 20})
        self.extra_logs = (pg,)
        pg.start()
        try:
            imaps = pg.port("imap", "implicit")
            c = imap_tls(imaps)
            c.login(ALICE, USERS[ALICE])
            c.select("INBOX")
            pg.proc.send_signal(15)
            # stops accepting
            wait_for(lambda: not port_accepts(imaps), 15, what="listener closed after SIGTERM")
            # the open session keeps working while it drains
            self.assertEqual(c.noop()[0], "OK")
            typ, _ = c.fetch("1", "(FLAGS)")
            self.assertEqual(typ, "OK")
            self.assertIsNone(pg.proc.poll(), "exited before its session ended")
            c.logout()
            # ...and once the last session is gone, it exits well before the deadline
            rc = pg.proc.wait(timeout=15)
            self.assertEqual(rc, 0)
        finally:
            problem = pg.exit_problem(pg.stop())
        self.assertIsNone(problem)

    def test_sigterm_deadline_ends_sessions(self):
        pg = Postern(self.dovecot, name="postern-deadline", timeouts={"drain": 2})
        self.extra_logs = (pg,)
        pg.start()
        try:
            c = RawClient(pg.port("imap", "implicit"), tls=True)
            c.readline()
            tagged, _ = c.cmd("a", "LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            c.cmd("b", "SELECT INBOX")
            pg.proc.send_signal(15)
            try:
                data = c.expect_closed(timeout=30)
            except socket.timeout:
                self.fail("session still open 30 s after SIGTERM with drain = 2")
            self.assertIn(b"* BYE", data)
            rc = pg.proc.wait(timeout=30)
            self.assertEqual(rc, 0)
        finally:
            problem = pg.exit_problem(pg.stop())
        self.assertIsNone(problem)

    # -- privileges

    def test_drops_root_to_the_configured_user(self):
        """user = "nobody": every thread runs as nobody once the listeners
        are bound (the mail ports need no root afterwards), logins still
        work, and an unknown account stops the start with an error."""
        import pwd
        if os.geteuid() != 0:
            self.skipTest("needs root to drop it")
        nobody = pwd.getpwnam("nobody")
        pg = Postern(self.dovecot, name="postern-user", extra='user = "nobody";')
        self.extra_logs = (pg,)
        pg.start()
        try:
            task_dir = "/proc/%d/task" % pg.proc.pid
            for tid in os.listdir(task_dir):
                with open(os.path.join(task_dir, tid, "status")) as f:
                    uids = [l.split()[1:] for l in f if l.startswith(("Uid:", "Gid:"))]
                self.assertEqual(uids[0], [str(nobody.pw_uid)] * 4, tid)
                self.assertEqual(uids[1], [str(nobody.pw_gid)] * 4, tid)
            c = imap_tls(pg.port("imap", "implicit"))
            c.login(ALICE, USERS[ALICE])
            self.assertEqual(c.select("INBOX")[0], "OK")
            c.logout()
        finally:
            problem = pg.exit_problem(pg.stop())
        self.assertIsNone(problem)
        bad = Postern(self.dovecot, name="postern-nouser", extra='user = "no-such-user-x";')
        import harness
        r = subprocess.run([harness.POSTERN_BIN, "-c", bad.conf_path], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no-such-user-x: no such account", r.stderr)

    # -- postern -t

    def test_check_good_config(self):
        rc, out = Postern.check_config(self.postern.conf_path)
        self.assertEqual(rc, 0, out)

    def _bad(self, name, text):
        path = os.path.join(self.postern.dir, name)
        with open(path, "w") as f:
            f.write(text)
        rc, out = Postern.check_config(path)
        self.assertNotEqual(rc, 0, "postern -t accepted %s:\n%s" % (name, text))
        return path, out

    def assertNamesLine(self, path, out, line):
        rx = r"(%s|%s):%d\b" % (re.escape(path), re.escape(os.path.basename(path)), line)
        self.assertRegex(out, rx, "expected %s:%d in:\n%s" % (os.path.basename(path), line, out))

    def test_check_bad_config_prints_file_and_line(self):
        good = self.postern.config_text().splitlines()
        # 1. a syntax error on a known line
        lines = list(good)
        lines.insert(3, "timeouts: { login = ; };")
        path, out = self._bad("syntax.conf", "\n".join(lines) + "\n")
        self.assertNamesLine(path, out, 4)
        # 2. a listener with an unknown protocol, alone on its line
        lines = [l for l in good if not l.startswith("listeners")]
        start = next(i for i, l in enumerate(good) if l.startswith("listeners"))
        end = next(i for i in range(start, len(good)) if good[i].startswith(");"))
        lines = good[:start] + [
            "listeners = (",
            '  { protocol = "imap"; address = "127.0.0.1"; port = 1143; tls = "starttls"; },',
            '  { protocol = "smtp"; address = "127.0.0.1"; port = 1587; tls = "starttls"; }',
            ");"] + good[end + 1:]
        path, out = self._bad("proto.conf", "\n".join(lines) + "\n")
        self.assertNamesLine(path, out, start + 3)
        # 3. a value of the wrong type
        lines = list(good)
        idx = next(i for i, l in enumerate(lines) if l.startswith("workers"))
        lines[idx] = 'workers = "many";'
        path, out = self._bad("type.conf", "\n".join(lines) + "\n")
        self.assertNamesLine(path, out, idx + 1)
        # 4. a listener naming a backend pool that does not exist
        lines = good[:start] + [
            "listeners = (",
            '  { protocol = "imap"; address = "127.0.0.1"; port = 1143; tls = "starttls"; '
            'backend = "nosuchpool"; }',
            ");"] + good[end + 1:]
        path, out = self._bad("pool.conf", "\n".join(lines) + "\n")
        self.assertNamesLine(path, out, start + 2)
        self.assertIn("nosuchpool", out)
        # 5. a certificate file that does not exist
        text = "\n".join(good).replace(pki().other_cert, "/nonexistent/other.pem")
        path, out = self._bad("cert.conf", text + "\n")
        self.assertIn("/nonexistent/other.pem", out)
        # 6. no such file
        rc, out = Postern.check_config(os.path.join(self.postern.dir, "missing.conf"))
        self.assertNotEqual(rc, 0)
        self.assertIn("missing.conf", out)

    def test_shipped_example_config_parses(self):
        # conf/postern.conf is documentation; its syntax must stay valid.
        # (It names paths of a real install, so only syntax and values are
        # checked: a missing certificate is the only acceptable complaint.)
        path = os.path.join(os.environ.get("POSTERN_SRC") or
                            os.path.join(os.path.dirname(__file__), "..", ".."),
                            "conf", "postern.conf")
        rc, out = Postern.check_config(path)
        if rc != 0:
            self.assertRegex(out, r"/etc/postern/tls/|cert|key|No such file",
                             "conf/postern.conf fails for another reason:\n" + out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Submission through postern: client -> postern (submission front) ->
Dovecot's submission service (submission-login + submission, Debian
dovecot-submissiond) -> a local SMTP sink that writes every message it is
given to a folder (Postfix's smtp-sink -d when installed, else the Python
SmtpSink below). PostfixBackendTest puts postern in front of a stock Postfix
instead (backend tls = "starttls": EHLO, STARTTLS, verified TLS, XCLIENT,
AUTH through Dovecot SASL) relaying to smtp-sink; a wrong tls_name gives
454 4.7.0.

Covered: an allowed user's message arrives (STARTTLS on the 587-style
listener and implicit TLS on the 465-style one); AUTH PLAIN with and without
an initial response, AUTH LOGIN with and without one; wrong password (535
5.7.8); an outgoing-off user gets 550 5.7.1 with the admin's message at MAIL
FROM and nothing arrives; toggling applies to the next session; a relayed
session is cut when outgoing is switched off; an account with every access
off gets 525 5.7.13; XCLIENT gives Dovecot the real client address (PROXY
protocol in front of postern); pipelining before and after AUTH; STARTTLS
command injection; hostile input (1 MB line, XCLIENT from a client, AUTH
before TLS); swaks when installed (a message sent, outgoing off: 550 5.7.1
and nothing arrives, wrong password: 535 5.7.8).

The helpers SmtpSink, PostfixSink, SubmissionDovecot, SubmissionPostern,
SaslDovecot and SubmissionPostfix extend harness.py's classes without
changing them.
"""

import asyncio
import base64
import json
import os
import pwd
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (HOST, USERS, Dovecot, GatewayTestCase, Listener, Postern,  # noqa: E402
                     RawClient, free_port, log, make_message, proxy_v1, run_root,
                     tail, wait_for, wait_ports)


# ---------------------------------------------------------------------------
# a tiny SMTP sink (stdlib asyncio; python3-aiosmtpd is not assumed: the
# python3 on PATH may not see Debian's dist-packages)


class SmtpSink:
    """An SMTP server on 127.0.0.1 that accepts every message and writes it
    to `directory` as NNNN.eml, with the envelope in NNNN.json ({"mail_from",
    "rcpt_to", "helo", "peer"}). Runs its own asyncio loop in a thread.
    Handles EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffing), RSET, NOOP, QUIT;
    advertises PIPELINING, 8BITMIME, SIZE; answers XCLIENT-less and
    AUTH-less (a relay for Dovecot's submission_relay_host)."""

    def __init__(self, directory=None, name="sink"):
        self.dir = directory or os.path.join(run_root(), name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "sink.log")
        self._seq = 0
        self._lock = threading.Lock()
        self._loop = None
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("sink did not start")
        return self

    def stop(self):
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def log_size(self):
        return harness.file_size(self.log_path)

    def _log(self, text):
        with self._lock, open(self.log_path, "a") as f:
            f.write("%.3f %s\n" % (time.time(), text))

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._session, HOST, self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    async def _session(self, reader, writer):
        peer = writer.get_extra_info("peername")
        helo, mail_from, rcpts = None, None, []

        async def reply(text):
            self._log("> %s" % text)
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        await reply("220 sink.test ESMTP test sink")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                self._log("< %s" % cmd)
                verb = cmd.split(" ", 1)[0].upper()
                arg = cmd[len(verb) + 1:] if " " in cmd else ""
                if verb == "EHLO":
                    helo = arg
                    await reply("250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                "250-ENHANCEDSTATUSCODES\r\n250 SIZE 52428800")
                elif verb == "HELO":
                    helo = arg
                    await reply("250 sink.test")
                elif verb == "MAIL":
                    m = re.match(r"(?i)FROM:\s*<([^>]*)>", arg)
                    mail_from, rcpts = (m.group(1) if m else arg), []
                    await reply("250 2.1.0 Ok")
                elif verb == "RCPT":
                    m = re.match(r"(?i)TO:\s*<([^>]*)>", arg)
                    rcpts.append(m.group(1) if m else arg)
                    await reply("250 2.1.5 Ok")
                elif verb == "DATA":
                    if mail_from is None or not rcpts:
                        await reply("503 5.5.1 Need MAIL and RCPT")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    body = []
                    while True:
                        l = await reader.readline()
                        if not l:
                            return
                        if l in (b".\r\n", b".\n"):
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        body.append(l)
                    name = self._store(b"".join(body), mail_from, rcpts, helo, peer)
                    await reply("250 2.0.0 Ok: queued as %s" % name)
                    mail_from, rcpts = None, []
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    await reply("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await reply("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    break
                else:
                    await reply("502 5.5.2 Command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _store(self, data, mail_from, rcpts, helo, peer):
        with self._lock:
            self._seq += 1
            name = "%04d" % self._seq
        tmp = os.path.join(self.dir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        with open(os.path.join(self.dir, name + ".json"), "w") as f:
            json.dump({"mail_from": mail_from, "rcpt_to": rcpts, "helo": helo,
                       "peer": list(peer) if peer else None}, f)
        os.rename(tmp, os.path.join(self.dir, name + ".eml"))
        return name

    def messages(self):
        """[(envelope dict, bytes)] in arrival order."""
        out = []
        for n in sorted(os.listdir(self.dir)):
            if not n.endswith(".eml"):
                continue
            with open(os.path.join(self.dir, n), "rb") as f:
                data = f.read()
            with open(os.path.join(self.dir, n[:-4] + ".json")) as f:
                env = json.load(f)
            out.append((env, data))
        return out

    def find(self, token):
        """Messages whose content contains token (str)."""
        return [(e, d) for (e, d) in self.messages() if token.encode() in d]

    def wait_message(self, token, timeout=20.0):
        return wait_for(lambda: self.find(token), timeout,
                        what="message %r in the sink" % token)[0]


class PostfixSink:
    """Postfix's smtp-sink(1) (Debian postfix) as the relay target, a real
    SMTP server: accepts every message and dumps each transaction to its
    own file in self.mail_dir (-d), envelope first (X-Client-Addr,
    X-Helo-Args, X-Mail-Args, X-Rcpt-Args), then the message as sent
    (dot-stuffed). The same reading interface as SmtpSink."""

    ENVELOPE = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:", b"X-Mail-Args:",
                b"X-Rcpt-Args:")

    def __init__(self, name="smtp-sink"):
        self.dir = os.path.join(run_root(), name)
        while os.path.exists(self.dir):
            self.dir += "_"
        self.mail_dir = os.path.join(self.dir, "mail")
        os.makedirs(self.mail_dir)
        os.chmod(self.dir, 0o755)
        self.as_postfix = os.geteuid() == 0
        if self.as_postfix:
            pw = pwd.getpwnam("postfix")
            os.chown(self.mail_dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "smtp-sink.log")
        self.proc = None

    def start(self):
        args = ["smtp-sink"]
        if self.as_postfix:
            args += ["-u", "postfix"]
        args += ["-d", os.path.join(self.mail_dir, "%Y%m%d%H%M%S."),
                 "%s:%d" % (HOST, self.port), "64"]
        self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log_fh, stderr=self._log_fh,
                                     stdin=subprocess.DEVNULL)
        wait_ports([self.port], proc=self.proc, what="smtp-sink")
        return self

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._log_fh.close()

    def log_size(self):
        return harness.file_size(self.log_path)

    @classmethod
    def _parse(cls, raw):
        env = {"mail_from": None, "rcpt_to": [], "helo": None, "peer": None}
        lines = raw.split(b"\n")
        k = 0
        while k < len(lines) and lines[k].startswith(cls.ENVELOPE):
            name, _, value = lines[k].partition(b":")
            value = value.strip().decode("utf-8", "replace")
            m = re.match(r"<([^>]*)>", value)
            if name == b"X-Mail-Args":
                env["mail_from"] = m.group(1) if m else value
            elif name == b"X-Rcpt-Args":
                env["rcpt_to"].append(m.group(1) if m else value)
            elif name == b"X-Helo-Args":
                env["helo"] = value
            elif name == b"X-Client-Addr":
                env["peer"] = [value]
            k += 1
        # the message as sent: undo the dot-stuffing
        body = [l[1:] if l.startswith(b".") else l for l in lines[k:]]
        return env, b"\n".join(body)

    def messages(self):
        """[(envelope dict, bytes)] in arrival order."""
        files = []
        for n in os.listdir(self.mail_dir):
            path = os.path.join(self.mail_dir, n)
            try:
                files.append((os.stat(path).st_mtime_ns, n, path))
            except OSError:
                pass
        out = []
        for _, _, path in sorted(files):
            with open(path, "rb") as f:
                out.append(self._parse(f.read()))
        return out

    def find(self, token):
        return [(e, d) for (e, d) in self.messages() if token.encode() in d]

    def wait_message(self, token, timeout=20.0):
        return wait_for(lambda: self.find(token), timeout,
                        what="message %r in smtp-sink's folder" % token)[0]


def relay_sink():
    """smtp-sink when Postfix is installed, else the Python SmtpSink."""
    if shutil.which("smtp-sink"):
        return PostfixSink().start()
    return SmtpSink().start()


# ---------------------------------------------------------------------------
# Dovecot with its submission service relaying to the sink


class SubmissionDovecot(Dovecot):
    """harness.Dovecot plus `protocols = ... submission`: submission-login
    on self.submission_port (plaintext, AUTH PLAIN/LOGIN, XCLIENT offered
    to login_trusted_networks = 127.0.0.0/8) relaying to relay_port."""

    def __init__(self, relay_port, submission_port=None, **kw):
        self.submission_port = submission_port or free_port()
        self.relay_port = relay_port
        super().__init__(**kw)

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path) as f:
            conf = f.read()
        conf = conf.replace("protocols = imap pop3\n", "protocols = imap pop3 submission\n", 1)
        conf += """\
hostname = dovecot.test
auth_mechanisms = plain login
submission_relay_host = {host}
submission_relay_port = {relay}
submission_relay_trusted = no
submission_relay_ssl = no
service submission-login {{
  inet_listener submission {{
    address = {host}
    port = {port}
  }}
}}
service submission {{
  process_limit = 1024
}}
""".format(host=HOST, relay=self.relay_port, port=self.submission_port)
        if os.geteuid() != 0:
            conf += "service submission-login {\n  chroot =\n}\n"
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def start(self):
        super().start()
        try:
            wait_ports([self.submission_port], proc=self.proc, what="dovecot submission")
        except RuntimeError:
            log("dovecot submission did not listen; log:\n%s" % tail(self.log_path))
            raise
        return self

    def submission_logins(self, user=None, offset=0):
        """[(user, rip)] for each submission-login Login line."""
        out = []
        for m in re.finditer(r"submission-login: Info: Login: user=<([^>]*)>.*?rip=([0-9a-fA-F.:]+)",
                             self.log_text(offset)):
            if user is None or m.group(1) == user:
                out.append((m.group(1), m.group(2)))
        return out


class SubmissionPostern(Postern):
    """harness.Postern whose backend servers also get submission_port."""

    def config_text(self):
        text = super().config_text()
        port = self.dovecot.submission_port
        return re.sub(r"pop3_port = (\d+);", r"pop3_port = \1; submission_port = %d;" % port,
                      text)


# ---------------------------------------------------------------------------
# client helpers


def ctx():
    return harness.pki().client_context()


def smtp_starttls(port, timeout=harness.IO_TIMEOUT):
    s = smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=timeout)
    s.starttls(context=ctx())
    s.ehlo("client.example")
    return s


def smtp_tls(port, timeout=harness.IO_TIMEOUT):
    s = smtplib.SMTP_SSL(HOST, port, local_hostname="client.example", context=ctx(),
                         timeout=timeout)
    s.ehlo("client.example")
    return s


def quit_quietly(s):
    try:
        s.quit()
    except Exception:
        try:
            s.close()
        except Exception:
            pass


class Smtp(RawClient):
    """RawClient with SMTP reply reading."""

    def reply(self, timeout=None):
        """One SMTP reply: (code, [lines text])."""
        lines = []
        while True:
            line = self.readline(timeout).decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def cmd(self, text, timeout=None):
        self.send(text + "\r\n")
        return self.reply(timeout)


def plain_ir(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------


class SubmissionTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.sink = relay_sink()
        cls.dovecot = SubmissionDovecot(relay_port=cls.sink.port)
        cls.dovecot.start()
        try:
            listeners = [Listener("submission", "starttls"),
                         Listener("submission", "implicit"),
                         Listener("submission", "implicit", proxy_protocol=True)]
            cls.postern = SubmissionPostern(cls.dovecot, listeners=listeners,
                                            limits={"bad_commands": 20},
                                            poll_ms=100).start()
        except Exception:
            cls.dovecot.stop()
            cls.sink.stop()
            raise
        cls.extra_logs = (cls.sink,)
        cls.p587 = cls.postern.port("submission", "starttls")
        cls.p465 = cls.postern.port("submission", "implicit")
        cls.p465_proxy = cls.postern.port("submission", "implicit", proxy_protocol=True)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.sink.stop()

    def tearDown(self):
        super().tearDown()
        for u in ("dave@example.com", "carol@example.com", "alice@example.com"):
            self.postern.delete_user(u)

    def token(self):
        return "tok-%s-%d" % (self._testMethodName, int(time.time() * 1000) % 100000000)

    def send_ok(self, s, sender="alice@example.com", rcpt="bob@example.com"):
        tok = self.token()
        msg = make_message(subject=tok, sender=sender, to=rcpt)
        refused = s.sendmail(sender, [rcpt], msg)
        self.assertEqual(refused, {})
        env, data = self.sink.wait_message(tok)
        self.assertEqual(env["mail_from"], sender)
        self.assertEqual(env["rcpt_to"], [rcpt])
        return tok

    # -- allowed

    def test_starttls_plain_allowed(self):
        s = smtplib.SMTP(HOST, self.p587, local_hostname="client.example",
                         timeout=harness.IO_TIMEOUT)
        try:
            s.ehlo("client.example")
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before TLS")
            self.assertTrue(s.has_extn("pipelining"))
            self.assertTrue(s.has_extn("enhancedstatuscodes"))
            s.starttls(context=ctx())
            s.ehlo("client.example")
            self.assertIn("PLAIN", s.esmtp_features.get("auth", "").upper())
            self.assertIn("LOGIN", s.esmtp_features.get("auth", "").upper())
            self.assertFalse(s.has_extn("starttls"))
            code, text = s.login("alice@example.com", USERS["alice@example.com"])
            self.assertEqual(code, 235)
            self.send_ok(s)
            # a second transaction in the same relayed session
            self.send_ok(s, rcpt="carol@example.com")
        finally:
            quit_quietly(s)

    def test_implicit_tls_mixed_case_user(self):
        # postern passes the login name through unchanged (the store decides
        # what it means) and normalises it only for its own policy lookup.
        s = smtp_tls(self.p465)
        try:
            code, _ = s.login("Alice@Example.com", USERS["alice@example.com"])
            self.assertEqual(code, 235)
            self.send_ok(s)
        finally:
            quit_quietly(s)
        self.postern.wait_log(r"event=decision client=\S+ user=alice@example.com result=allowed")

    def test_auth_variants(self):
        user, pw = "erin@example.com", USERS["erin@example.com"]
        variants = [("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)]
        for mech, ir in variants:
            with self.subTest(mech=mech, initial_response=ir):
                s = smtp_tls(self.p465)
                try:
                    s.user, s.password = user, pw
                    authobj = s.auth_plain if mech == "PLAIN" else s.auth_login
                    code, text = s.auth(mech, authobj, initial_response_ok=ir)
                    self.assertEqual(code, 235, text)
                    self.send_ok(s, sender=user)
                finally:
                    quit_quietly(s)

    def test_auth_exchange_by_hand(self):
        with Smtp(self.p465, tls=True) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.example")[0], 250)
            self.assertEqual(c.cmd("AUTH LOGIN"), (334, ["VXNlcm5hbWU6"]))
            self.assertEqual(c.cmd(b64("alice@example.com")), (334, ["UGFzc3dvcmQ6"]))
            self.assertEqual(c.cmd("*")[0], 501)
            self.assertEqual(c.cmd("AUTH PLAIN"), (334, [""]))
            code, lines = c.cmd(plain_ir("alice@example.com", USERS["alice@example.com"]))
            self.assertEqual((code, lines), (235, ["2.7.0 Authentication successful"]))
            self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_xclient_gives_dovecot_the_client_address(self):
        off = self.dovecot.log_size()
        with Smtp(self.p465_proxy, tls=True,
                  prefix=proxy_v1("198.51.100.23", "127.0.0.1", 40123, 465)) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO laptop.example")[0], 250)
            code, _ = c.cmd("AUTH PLAIN " + plain_ir("carol@example.com",
                                                     USERS["carol@example.com"]))
            self.assertEqual(code, 235)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        found = wait_for(lambda: self.dovecot.submission_logins("carol@example.com", off),
                         15, what="dovecot submission login of carol")
        self.assertEqual(found[-1][1], "198.51.100.23")

    # -- refusals

    def test_wrong_password(self):
        s = smtp_tls(self.p465)
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("alice@example.com", "not-the-password")
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertIn(b"5.7.8", cm.exception.smtp_error)
            # the session goes on: a right password now works
            code, _ = s.login("alice@example.com", USERS["alice@example.com"])
            self.assertEqual(code, 235)
        finally:
            quit_quietly(s)
        self.postern.wait_log(r"event=auth-failed")

    def test_outgoing_off_refused_at_mail_from(self):
        msg_text = "Sending is switched off for dave. Ask the helpdesk."
        self.postern.set_user("dave@example.com", outgoing="off", message=msg_text)
        before = len(self.sink.messages())
        s = smtp_starttls(self.p587)
        try:
            code, _ = s.login("dave@example.com", USERS["dave@example.com"])
            self.assertEqual(code, 235)
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("dave@example.com", ["bob@example.com"],
                           make_message(subject=self.token(), sender="dave@example.com"))
            self.assertEqual(cm.exception.smtp_code, 550)
            # two lines, which smtplib joins with a newline after cutting
            # "550-"/"550 ": the admin's text, then what the session is
            # still good for
            self.assertEqual(cm.exception.smtp_error,
                             b"5.7.1 " + msg_text.encode() + b"\n" +
                             b"5.7.1 This session cannot send mail; it can only QUIT.")
            code, text = s.docmd("RCPT", "TO:<bob@example.com>")
            self.assertEqual(code, 503)
            code, text = s.docmd("DATA")
            self.assertEqual(code, 503)
            self.assertEqual(s.noop()[0], 250)
            self.assertEqual(s.rset()[0], 250)
        finally:
            quit_quietly(s)
        time.sleep(0.5)
        self.assertEqual(len(self.sink.messages()), before, "nothing may reach the sink")
        self.postern.wait_log(r"user=dave@example.com result=refused reason=outgoing-disabled")

    def test_toggle_applies_to_next_session(self):
        user, pw = "dave@example.com", USERS["dave@example.com"]
        self.postern.set_user(user, outgoing="off", message="Off for now.")
        s = smtp_tls(self.p465)
        try:
            s.login(user, pw)
            with self.assertRaises(smtplib.SMTPSenderRefused):
                s.sendmail(user, ["bob@example.com"], make_message(sender=user))
            self.postern.set_user(user, outgoing="on")
            time.sleep(0.5)
            # the open session keeps its refusal (documented)
            with self.assertRaises(smtplib.SMTPSenderRefused):
                s.sendmail(user, ["bob@example.com"], make_message(sender=user))
        finally:
            quit_quietly(s)
        s = smtp_tls(self.p465)
        try:
            s.login(user, pw)
            self.send_ok(s, sender=user)
        finally:
            quit_quietly(s)
        self.postern.set_user(user, outgoing="off", message="Off again.")
        s = smtp_tls(self.p465)
        try:
            s.login(user, pw)
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail(user, ["bob@example.com"], make_message(sender=user))
            self.assertIn(b"Off again.", cm.exception.smtp_error)
        finally:
            quit_quietly(s)

    def test_relayed_session_cut_when_outgoing_switched_off(self):
        user, pw = "carol@example.com", USERS["carol@example.com"]
        s = smtp_tls(self.p465)
        try:
            s.login(user, pw)
            self.send_ok(s, sender=user)
            self.postern.set_user(user, outgoing="off")
            self.postern.wait_log(r"close=policy", timeout=15)
            with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionError,
                                    ssl.SSLError)):
                s.noop()
        finally:
            try:
                s.close()
            except Exception:
                pass

    def test_account_disabled(self):
        self.postern.set_user("carol@example.com", imap="off", pop="off", activesync="off",
                              incoming="off", outgoing="off", message="Account closed.")
        s = smtp_tls(self.p465)
        try:
            # smtplib's login() would retry with LOGIN on the closed
            # connection; one mechanism shows the reply.
            s.user, s.password = "carol@example.com", USERS["carol@example.com"]
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.auth("PLAIN", s.auth_plain)
            self.assertEqual(cm.exception.smtp_code, 525)
            self.assertIn(b"5.7.13 Account closed.", cm.exception.smtp_error)
        finally:
            try:
                s.close()
            except Exception:
                pass

    # -- pipelining

    def test_pipelining_through_auth(self):
        tok = self.token()
        msg = make_message(subject=tok).decode()
        with Smtp(self.p465, tls=True) as c:
            self.assertEqual(c.reply()[0], 220)
            c.send("EHLO client.example\r\nNOOP\r\nMAIL FROM:<alice@example.com>\r\n"
                   "AUTH PLAIN %s\r\nMAIL FROM:<alice@example.com>\r\n"
                   "RCPT TO:<bob@example.com>\r\nRCPT TO:<erin@example.com>\r\nDATA\r\n" %
                   plain_ir("alice@example.com", USERS["alice@example.com"]))
            self.assertEqual(c.reply()[0], 250)   # EHLO
            self.assertEqual(c.reply()[0], 250)   # NOOP
            self.assertEqual(c.reply()[0], 530)   # MAIL before AUTH
            self.assertEqual(c.reply()[0], 235)   # AUTH
            self.assertEqual(c.reply()[0], 250)   # MAIL, from the backend
            self.assertEqual(c.reply()[0], 250)   # RCPT
            self.assertEqual(c.reply()[0], 250)   # RCPT
            self.assertEqual(c.reply()[0], 354)   # DATA
            c.send(msg.replace("\r\n.", "\r\n..") + ".\r\nQUIT\r\n")
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 221)
        env, data = self.sink.wait_message(tok)
        self.assertEqual(env["rcpt_to"], ["bob@example.com", "erin@example.com"])

    def test_pipelined_commands_after_failed_auth(self):
        with Smtp(self.p465, tls=True) as c:
            self.assertEqual(c.reply()[0], 220)
            c.send("EHLO client.example\r\nAUTH PLAIN %s\r\nNOOP\r\nQUIT\r\n" %
                   plain_ir("alice@example.com", "wrong"))
            self.assertEqual(c.reply()[0], 250)
            code, lines = c.reply()
            self.assertEqual(code, 535)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 221)

    # -- hostile input and pre-auth rules

    def test_auth_before_tls_refused(self):
        with Smtp(self.p587) as c:
            self.assertEqual(c.reply()[0], 220)
            code, lines = c.cmd("EHLO client.example")
            self.assertFalse(any(l.upper().startswith("AUTH") for l in lines))
            code, lines = c.cmd("AUTH PLAIN " + plain_ir("alice@example.com", "x"))
            self.assertEqual(code, 538)
            self.assertEqual(c.cmd("MAIL FROM:<alice@example.com>")[0], 530)

    def test_starttls_injection_discarded(self):
        with Smtp(self.p587) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.example")[0], 250)
            c.send("STARTTLS\r\nNOOP\r\n")
            self.assertEqual(c.reply()[0], 220)
            # The NOOP went in plaintext after STARTTLS: postern drops it (or
            # the handshake fails on it); either way it is never answered.
            try:
                c.wrap_tls()
            except (ssl.SSLError, OSError):
                return
            code, lines = c.cmd("EHLO client.example")
            self.assertEqual(code, 250, "first reply over TLS must be the EHLO's")
            self.assertTrue(any("AUTH" in l for l in lines))

    def test_hostile_lines(self):
        with Smtp(self.p465, tls=True) as c:
            self.assertEqual(c.reply()[0], 220)
            c.send("NOOP " + "A" * (1024 * 1024) + "\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 500)
            self.assertEqual(c.cmd("XCLIENT ADDR=10.9.8.7")[0], 550)
            self.assertEqual(c.cmd("EHLO client.example")[0], 250)
            c.send("NOOP\nRSET\n")   # bare LF accepted for commands
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.cmd("NOOP")[0], 250)
        s = smtp_tls(self.p465)
        try:
            self.assertEqual(s.login("alice@example.com", USERS["alice@example.com"])[0], 235)
        finally:
            quit_quietly(s)

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks(self):
        for tls_opt, port, auth in (("--tls", self.p587, "PLAIN"),
                                     ("--tls-on-connect", self.p465, "LOGIN")):
            with self.subTest(tls=tls_opt, auth=auth):
                tok = self.token() + auth
                r = subprocess.run(["swaks", "--server", HOST, "--port", str(port), tls_opt,
                                    "--helo", "swaks.example", "--auth", auth,
                                    "--auth-user", "bob@example.com",
                                    "--auth-password", USERS["bob@example.com"],
                                    "--from", "bob@example.com", "--to", "alice@example.com",
                                    "--header", "Subject: %s" % tok, "--pipeline",
                                    "--timeout", "30"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=90)
                out = r.stdout.decode("utf-8", "replace")
                self.assertEqual(r.returncode, 0, out)
                self.assertIn("235 2.7.0", out)
                env, _ = self.sink.wait_message(tok)
                self.assertEqual(env["mail_from"], "bob@example.com")

    def swaks(self, port, user, password, tok, *extra):
        r = subprocess.run(["swaks", "--server", HOST, "--port", str(port), "--tls",
                            "--helo", "swaks.example", "--auth", "PLAIN",
                            "--auth-user", user, "--auth-password", password,
                            "--from", user, "--to", "alice@example.com",
                            "--header", "Subject: %s" % tok, "--timeout", "30"] + list(extra),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_refusals(self):
        user = "dave@example.com"
        with self.subTest("outgoing off"):
            self.postern.set_user(user, outgoing="off", message="No sending for dave.")
            tok = self.token() + "off"
            before = len(self.sink.messages())
            rc, out = self.swaks(self.p587, user, USERS[user], tok)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("235 2.7.0", out)
            # swaks marks a reply read over TLS "<~", an error reply "*"
            self.assertIn("<~* 550-5.7.1 No sending for dave.", out)
            self.assertIn("<~* 550 5.7.1 This session cannot send mail; it can only QUIT.", out)
            time.sleep(0.5)
            self.assertEqual(len(self.sink.messages()), before, "nothing may reach the sink")
            self.assertEqual(self.sink.find(tok), [])
        with self.subTest("wrong password"):
            self.postern.set_user(user, outgoing="on")
            tok = self.token() + "pw"
            rc, out = self.swaks(self.p587, user, "not-the-password", tok)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("<~* 535 5.7.8", out)
            time.sleep(0.5)
            self.assertEqual(self.sink.find(tok), [])


# ---------------------------------------------------------------------------
# postern in front of a stock Postfix on "587" (backend tls = "starttls")


class SaslDovecot(Dovecot):
    """harness.Dovecot plus an auth socket for Postfix's SASL
    (smtpd_sasl_type = dovecot) at self.auth_socket."""

    def _write_config(self):
        self.auth_socket = os.path.join(self.dir, "auth-postfix")
        super()._write_config()
        with open(self.conf_path, "a") as f:
            f.write("auth_mechanisms = plain login\n"
                    "service auth {\n  unix_listener %s {\n    mode = 0666\n  }\n}\n" %
                    self.auth_socket)


class SubmissionPostfix(harness.PrivatePostfix):
    """A private Postfix as a submission server, as a stock one on 587:
    smtpd on 127.0.0.1:smtp_port with smtpd_tls_security_level = encrypt
    and smtpd_tls_auth_only (STARTTLS first, AUTH only after it), the test
    PKI's mail.example.test certificate, SASL through Dovecot's auth
    socket, XCLIENT for 127.0.0.1, and every authenticated message relayed
    to [127.0.0.1]:relay_port."""

    def __init__(self, relay_port, sasl_path, name="postfix-submission"):
        self.relay_port = relay_port
        self.sasl_path = sasl_path
        super().__init__(lmtp_port=0, name=name)

    def _main_cf(self):
        p = harness.pki()
        return """\
# private Postfix as a submission server for postern's tests (generated)
myhostname = mail.example.test
mynetworks = 192.0.2.1/32
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
relayhost = [127.0.0.1]:{relay}
smtp_tls_security_level = none
""".format(cert=p.cert, key=p.key, sasl=self.sasl_path, relay=self.relay_port)


@unittest.skipUnless(shutil.which("postfix") and shutil.which("smtp-sink"),
                     "Debian postfix not installed")
class PostfixBackendTest(GatewayTestCase):
    """client -> postern (submission, implicit TLS) -> Postfix (EHLO,
    STARTTLS, TLS verified against the test CA and tls_name, EHLO, XCLIENT,
    AUTH through Dovecot SASL) -> smtp-sink."""

    @classmethod
    def setUpClass(cls):
        cls.sink = PostfixSink(name="smtp-sink-postfix").start()
        cls.postfix = None
        cls.dovecot = SaslDovecot(name="dovecot-sasl").start()
        try:
            cls.postfix = SubmissionPostfix(cls.sink.port, cls.dovecot.auth_socket).start()
            ca = harness.pki().ca_cert

            def server(tls_name):
                return (HOST, 0, 0, {"submission_port": cls.postfix.smtp_port,
                                     "tls": "starttls", "tls_name": tls_name, "ca_file": ca})

            def pool(name, *tls_names):
                return {"name": name, "servers": [server(n) for n in tls_names]}
            failover = Listener("submission", "starttls", backend="failover")
            listeners = [Listener("submission", "implicit", backend="postfix"),
                         Listener("submission", "implicit", proxy_protocol=True,
                                  backend="postfix"),
                         Listener("submission", "starttls", backend="wrong-name"),
                         failover]
            # "failover": a first server whose certificate does not match
            # (the handshake fails), then the right one
            cls.postern = Postern(cls.dovecot, listeners=listeners, name="postern-postfix",
                                  backends=[pool("postfix", "mail.example.test"),
                                            pool("wrong-name", "other.example.test"),
                                            pool("failover", "other.example.test",
                                                 "mail.example.test")],
                                  poll_ms=100).start()
        except Exception:
            if cls.postfix is not None:
                cls.postfix.stop()
            cls.dovecot.stop()
            cls.sink.stop()
            raise
        cls.extra_logs = (cls.postfix, cls.sink)
        cls.port = cls.postern.port("submission", "implicit")
        cls.port_proxy = cls.postern.port("submission", "implicit", proxy_protocol=True)
        cls.port_wrong = listeners[2].port
        cls.port_failover = failover.port

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.postfix.stop()
            cls.sink.stop()

    def token(self):
        return "pf-%s-%d" % (self._testMethodName, int(time.time() * 1000) % 100000000)

    def test_allowed_user_message_arrives(self):
        tok = self.token()
        off = self.postfix.log_size()
        s = smtp_tls(self.port)
        try:
            self.assertEqual(s.login("alice@example.com", USERS["alice@example.com"])[0], 235)
            refused = s.sendmail("alice@example.com", ["bob@example.com"],
                                 make_message(subject=tok, sender="alice@example.com",
                                              to="bob@example.com"))
            self.assertEqual(refused, {})
        finally:
            quit_quietly(s)
        env, data = self.sink.wait_message(tok)
        self.assertEqual(env["mail_from"], "alice@example.com")
        self.assertEqual(env["rcpt_to"], ["bob@example.com"])
        # Postfix relayed it: its Received header, with TLS and SASL
        self.assertIn(b"by mail.example.test (Postfix)", data)
        log_text = wait_for(lambda: re.search(r"sasl_username=alice@example.com",
                                              self.postfix.log_text(off)) and
                            self.postfix.log_text(off), 15, what="postfix SASL login")
        self.assertRegex(log_text, r"TLS connection established from \S+\[127\.0\.0\.1\]")
        self.assertRegex(log_text, r"sasl_method=PLAIN, sasl_username=alice@example.com")

    def test_xclient_gives_postfix_the_client_address(self):
        off = self.postfix.log_size()
        with Smtp(self.port_proxy, tls=True,
                  prefix=proxy_v1("198.51.100.23", "127.0.0.1", 40123, 465)) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO laptop.example")[0], 250)
            code, _ = c.cmd("AUTH PLAIN " + plain_ir("carol@example.com",
                                                     USERS["carol@example.com"]))
            self.assertEqual(code, 235)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        # XCLIENT ADDR changed the client Postfix sees (the session's
        # disconnect line names it), over TLS, with a successful AUTH
        wait_for(lambda: re.search(r"disconnect from \S*\[198\.51\.100\.23\] .*"
                                   r"starttls=1 auth=1 ", self.postfix.log_text(off)),
                 15, what="postfix session of carol from 198.51.100.23")

    def test_wrong_password(self):
        s = smtp_tls(self.port)
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("alice@example.com", "not-the-password")
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertIn(b"5.7.8", cm.exception.smtp_error)
        finally:
            quit_quietly(s)

    def test_outgoing_off(self):
        self.postern.set_user("dave@example.com", outgoing="off", message="Not via Postfix.")
        try:
            before = len(self.sink.messages())
            s = smtp_tls(self.port)
            try:
                self.assertEqual(s.login("dave@example.com", USERS["dave@example.com"])[0], 235)
                with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                    s.sendmail("dave@example.com", ["bob@example.com"],
                               make_message(sender="dave@example.com"))
                self.assertEqual(cm.exception.smtp_code, 550)
                self.assertIn(b"5.7.1 Not via Postfix.", cm.exception.smtp_error)
            finally:
                quit_quietly(s)
            time.sleep(0.5)
            self.assertEqual(len(self.sink.messages()), before)
        finally:
            self.postern.delete_user("dave@example.com")

    def test_failed_handshake_fails_over_to_the_next_server(self):
        tok = self.token()
        off = self.postern.log_size()
        s = smtp_starttls(self.port_failover)
        try:
            self.assertEqual(s.login("alice@example.com", USERS["alice@example.com"])[0], 235)
            self.assertEqual(s.sendmail("alice@example.com", ["bob@example.com"],
                                        make_message(subject=tok, sender="alice@example.com",
                                                     to="bob@example.com")), {})
        finally:
            quit_quietly(s)
        self.sink.wait_message(tok)
        # the first server's certificate was refused, the second one took it
        self.postern.wait_log(r"event=backend-error .*backend=failover .*error=tls",
                              offset=off)

    def test_wrong_tls_name_fails_with_454(self):
        off = self.postfix.log_size()
        s = smtp_starttls(self.port_wrong)
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.user, s.password = "alice@example.com", USERS["alice@example.com"]
                s.auth("PLAIN", s.auth_plain)
            self.assertEqual(cm.exception.smtp_code, 454)
            self.assertIn(b"4.7.0", cm.exception.smtp_error)
        finally:
            quit_quietly(s)
        self.postern.wait_log(r"event=backend-error .*backend=wrong-name .*error=tls")
        # the handshake was refused by postern's check: no SASL at Postfix
        time.sleep(0.5)
        self.assertNotIn("sasl_username=alice", self.postfix.log_text(off))


if __name__ == "__main__":
    harness.main()

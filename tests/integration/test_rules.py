#!/usr/bin/env python3
"""The incoming rules end to end: rules made with the real posternctl,
messages delivered by LMTP through postern's delivery hop to a real Dovecot
(LMTP + IMAP, with the sieve_before script of conf/dovecot/), and where each
message really landed read back: the INBOX and Junk folders over IMAP, the
quarantine with `posternctl quarantine list/show/release`, the per-recipient
LMTP replies (reject code and text, drops), and BCC/forward copies arriving
in an SMTP sink (the MTA's re-injection listener) with our loop header.

Spec cases (../shared/spec/rules.md 1.8) covered end to end: 1, 5, 9, 11
(the size boundary), 13, 17, 19, 23, 25, 29, 33, 35, 37; plus four
recipients with four outcomes in one transaction, spam with every modifier
visible in the delivered message, quarantine release back to the INBOX,
forged X-Postern-* headers, and hostile messages (1,000 parts, 25-deep
message/rfc822, a 20 MB attachment, a catastrophic regex on 100 KB of
text) answered without a crash."""

import base64
import json
import os
import re
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, JUNK_SIEVE, DeliveryDovecot, DeliveryPostern,  # noqa: E402
                     GatewayTestCase, LmtpListener, RulesGatewayTestCase, SmtpSink,
                     lmtp_connect, lmtp_deliver, lmtp_transaction, main, metric_sum,
                     run_root, wait_for)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
SENDER = "x@ext.example"
AUTHSERV = "mx.example.com"
NODE = "mx-test.example.com"
LOOP_SECRET = "integration-loop-secret-" + "5" * 32
PARTNER = "ext@partner.example"
XFORWARD = ("NAME=mail.ext.example ADDR=198.51.100.1 PROTO=ESMTP "
            "HELO=mail.ext.example SOURCE=REMOTE")


def tag():
    return "r" + uuid.uuid4().hex[:12]


def message(subject=None, body="Hello Alice,\r\nthe text of the message.\r\n",
            sender=SENDER, to=ALICE, headers=(), content_type="text/plain; charset=us-ascii",
            auth=None):
    """A message with CRLF line ends; subject None: no Subject field.
    auth: "pass" or "fail": a trusted Authentication-Results field."""
    h = ["From: Sender <%s>" % sender, "To: %s" % to,
         "Date: Mon, 01 Jan 2024 00:00:00 +0000",
         "Message-ID: <%s@ext.example>" % uuid.uuid4().hex]
    if auth is not None:
        h.append("Authentication-Results: %s; spf=%s smtp.mailfrom=ext.example; "
                 "dkim=%s header.d=ext.example; dmarc=%s header.from=ext.example" %
                 (AUTHSERV, auth, auth, auth))
    if subject is not None:
        h.append("Subject: %s" % subject)
    h.extend(headers)
    h += ["MIME-Version: 1.0", "Content-Type: %s" % content_type]
    head = ("\r\n".join(h) + "\r\n\r\n").encode()
    return head + (body if isinstance(body, bytes) else body.encode())


def cond(param, op, values=(), header=None):
    c = {"param": param, "op": op, "values": list(values)}
    if header is not None:
        c["header"] = header
    return c


def rule_doc(name, conditions=(), disposition="none", level=None, scope=None,
             status="active", **actions):
    """A rule as posternctl's JSON (policy/rule.c). actions: reject_text,
    xheaders [(name, value)], subject, banner, bcc [...], forward [...]."""
    doc = {"name": name, "status": status,
           "condition_type": "match" if conditions else "none",
           "conditions": list(conditions),
           "actions": {"disposition": disposition}}
    a = doc["actions"]
    for k, v in actions.items():
        if k == "xheaders":
            a["xheaders"] = [{"name": n, "value": val} for n, val in v]
        else:
            a[k] = v
    if level is not None:
        doc["level"] = level
    if scope is not None:
        doc["apply_to"] = scope
    return doc


class FakeLmtp:
    """A one-connection LMTP store on its own port whose reply after DATA
    is `final`; keeps the envelope and the raw DATA bytes (dot-stuffed, as
    received). Its greeting and LHLO replies are multi-line."""

    def __init__(self, final):
        self.final = final
        self.mail_from, self.rcpts, self.data = None, [], b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(30)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220-fake.store\r\n220 LMTP ready\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                if cmd.upper().startswith("LHLO"):
                    conn.sendall(b"250-fake.store\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif cmd.upper().startswith("MAIL FROM:"):
                    self.mail_from = cmd[10:].strip("<>")
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif cmd.upper().startswith("RCPT TO:"):
                    self.rcpts.append(cmd[8:].strip("<>"))
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif cmd.upper() == "DATA":
                    conn.sendall(b"354 go\r\n")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l
                    self.data = data
                    conn.sendall(b"%d %s\r\n" % (self.final, b"2.0.0 Saved" if self.final == 250
                                                 else b"4.2.2 Mailbox full" if self.final < 500
                                                 else b"5.7.1 Refused"))
                elif cmd.upper() == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"500 what\r\n")
        except OSError:
            return
        finally:
            f.close()
            conn.close()

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(10)


def rule_options(doc):
    """The same rule as `posternctl rule create` options."""
    args = ["--name", doc["name"]]
    if doc.get("status") == "inactive":
        args.append("--inactive")
    if not doc["conditions"]:
        args += ["--no-conditions", "--confirm"]
    for c in doc["conditions"]:
        param = "header:" + c["header"] if c.get("header") else c["param"]
        values = c["values"]
        delim = ","
        if any("," in v for v in values):
            delim = ";;"
            args += ["--delimiter", delim]
        args += ["--if", " ".join([param, c["op"]] + ([delim.join(values)] if values else []))]
    a = doc["actions"]
    disp = a.get("disposition", "none")
    if disp == "reject" and a.get("reject_text"):
        args += ["--action", "reject=" + a["reject_text"]]
    elif disp != "none":
        args += ["--action", disp]
    for name, value in [(x["name"], x["value"]) for x in a.get("xheaders", [])]:
        args += ["--action", "xheader=%s:%s" % (name, value)]
    if a.get("subject"):
        args += ["--action", "subject=" + a["subject"]]
    if a.get("banner"):
        args += ["--action", "banner=" + a["banner"]]
    for kind in ("bcc", "forward"):
        if a.get(kind):
            args += ["--action", "%s=%s" % (kind, ",".join(a[kind]))]
    scope = doc.get("apply_to") or {}
    for key, opt in (("users", "--users"), ("groups", "--groups"),
                     ("exclude_users", "--exclude-users"),
                     ("exclude_groups", "--exclude-groups")):
        if scope.get(key):
            args += [opt, ",".join(scope[key])]
    if scope.get("mode"):
        args += ["--mode", scope["mode"]]
    if doc.get("level"):
        args += ["--level", str(doc["level"])]
    return args


class RulesTest(RulesGatewayTestCase):

    name = "rules"

    @classmethod
    def setUpClass(cls):
        cls.sink = SmtpSink()
        cls.extra_logs = (cls.sink,)
        try:
            super().setUpClass()
        except Exception:
            cls.sink.stop()
            raise

    @classmethod
    def rules_config(cls):
        return {"enabled": True, "authserv_id": AUTHSERV, "backscatter_guard": True,
                "quarantine_directory": cls.qdir, "node": NODE,
                "copy_backend": "reinject", "loop_secret": LOOP_SECRET,
                "regex_match_limit": 100000}

    @classmethod
    def postern_kw(cls):
        return {"copy_smtp_port": cls.sink.port}

    @classmethod
    def postern_started(cls):
        # Sales = {alice, bob} (spec 1.8 fixture)
        cls.postern.ctl("group", "create", "sales")
        cls.postern.ctl("group", "add", "sales", ALICE, BOB)

    @classmethod
    def tearDownClass(cls):
        cls.sink.stop()
        super().tearDownClass()

    # -- helpers

    def add_rule(self, doc, as_json=False):
        """posternctl rule create from options (the admin's way), or from
        the JSON document with as_json."""
        if as_json:
            path = os.path.join(self.postern.dir, "rule-%s.json" % uuid.uuid4().hex[:8])
            with open(path, "w") as f:
                json.dump(doc, f)
            self.ctl("rule", "create", "--json", path)
        else:
            self.ctl("rule", "create", *rule_options(doc))
        shown = json.loads(self.ctl("rule", "show", doc["name"], "--json").stdout)
        self.assertEqual(shown["name"], doc["name"])
        return shown

    def deliver(self, rcpts, msg, xforward=XFORWARD, sender=SENDER):
        return lmtp_deliver(self.port, sender, rcpts, msg, xforward=xforward)

    def found(self, user, folder, needle):
        """The raw messages in user's folder whose header or body contains
        needle."""
        return self.store_search(user, folder, ["TEXT", '"%s"' % needle], "")

    def where(self, user, needle):
        """{"INBOX": n, "Junk": n} for needle in user's mailbox."""
        return {f: len(self.found(user, f, needle)) for f in ("INBOX", "Junk")}

    def quarantine(self, *filters):
        r = self.ctl("quarantine", "list", "--json", *filters)
        return json.loads(r.stdout)

    def assertLanded(self, user, needle, folder):
        want = {"INBOX": 0, "Junk": 0}
        if folder is not None:
            want[folder] = 1
        self.assertEqual(self.where(user, needle), want, "%s: %s" % (user, needle))

    def assertStillDelivers(self):
        t = tag()
        res = self.deliver([DAVE], message(subject=t, to=DAVE))
        self.assertEqual(res[DAVE][0], 250, res)
        self.assertLanded(DAVE, t, "INBOX")

    # -- plain delivery and forged headers

    def test_case1_no_rules_inbox(self):
        t = tag()
        res = self.deliver([ALICE, BOB], message(subject=t))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(res[BOB][0], 250, res)
        self.assertLanded(ALICE, t, "INBOX")
        self.assertLanded(BOB, t, "INBOX")

    def test_forged_folder_header_is_stripped(self):
        # Only postern may say "Junk": an inbound copy of the header is removed.
        t = tag()
        res = self.deliver([ALICE], message(subject=t, headers=[
            "X-Postern-Folder: Junk", "X-Postern-Rule: forged"]))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "INBOX")
        m = self.found(ALICE, "INBOX", t)[0]
        self.assertNotIn(b"X-Postern-Folder", m)
        self.assertNotIn(b"forged", m)

    # -- spam and modifiers

    def test_spam_to_junk_with_every_modifier(self):
        self.add_rule(rule_doc("Offers", [cond("subject", "contains", ["offer"])],
                               "spam", xheaders=[("X-T", "1")], subject="[SPAM]",
                               banner="CAUTION: this message looks like spam."))
        t = tag()
        res = self.deliver([ALICE], message(subject="Special Offer " + t))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "Junk")
        m = self.found(ALICE, "Junk", t)[0]
        head, _, body = m.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nX-Postern-Folder: Junk\r\n", b"\r\n" + head + b"\r\n")
        self.assertIn(b"X-Postern-Rule: Offers\r\n", head + b"\r\n")
        self.assertIn(b"X-T: 1\r\n", head + b"\r\n")
        self.assertRegex(head, rb"\r\nSubject: Special Offer %s \[SPAM\]" % t.encode())
        self.assertTrue(body.startswith(b"CAUTION: this message looks like spam.\r\n\r\n"
                                        b"Hello Alice,"), body[:200])
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rule="Offers" '
                              r'disposition=spam' % re.escape(ALICE))
        self.assertGreaterEqual(metric_sum(self.postern.metrics(), "postern_rule_hits_total",
                                           rule="Offers", action="spam"), 1)

    def test_audit_rule_logs_and_does_not_act(self):
        doc = rule_doc("Would reject", [cond("subject", "contains", ["auditme"])], "reject")
        self.ctl("rule", "create", "--audit", *rule_options(doc))
        self.add_rule(rule_doc("Then junk", [cond("subject", "contains", ["auditme"])], "spam"))
        t = tag()
        off = self.postern.log_size()
        res = self.deliver([ALICE], message(subject="auditme " + t, auth="pass"))
        self.assertEqual(res[ALICE][0], 250, res)
        # evaluation went on past the audit rule: the next one decided
        self.assertLanded(ALICE, t, "Junk")
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rule="Then junk" '
                              r'.*audit="Would reject"' % re.escape(ALICE), offset=off)

    def test_case5_absent_subject_negative_operator(self):
        self.add_rule(rule_doc("Not invoice", [cond("subject", "not_contains", ["invoice"])],
                               xheaders=[("X-T", "1")]))
        t = tag()
        res = self.deliver([ALICE], message(subject=None, body="no subject %s\r\n" % t))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "INBOX")
        m = self.found(ALICE, "INBOX", t)[0]
        self.assertIn(b"\r\nX-T: 1\r\n", b"\r\n" + m)
        # with an invoice subject: no header
        t2 = tag()
        self.deliver([ALICE], message(subject="Invoice " + t2))
        self.assertNotIn(b"X-T: 1", self.found(ALICE, "INBOX", t2)[0])

    # -- scope and several recipients

    def test_case19_scope_priorities(self):
        self.add_rule(rule_doc("Sales offers", [cond("subject", "contains", ["offer"])], "spam",
                               scope={"mode": "selected", "groups": ["sales"],
                                      "exclude_users": [BOB]}))
        t = tag()
        res = self.deliver([ALICE, BOB, CAROL], message(subject="offer " + t))
        for r in (ALICE, BOB, CAROL):
            self.assertEqual(res[r][0], 250, res)
        self.assertLanded(ALICE, t, "Junk")
        self.assertLanded(BOB, t, "INBOX")      # excluded user beats selected group
        self.assertLanded(CAROL, t, "INBOX")    # not selected

    def test_case23_two_recipients_two_outcomes(self):
        self.add_rule(rule_doc("Sales offers", [cond("subject", "contains", ["offer"])], "spam",
                               scope={"mode": "selected", "groups": ["sales"]}))
        t = tag()
        off = self.dovecot.log_size()
        c = lmtp_connect(self.port)
        try:
            res = lmtp_transaction(c, SENDER, [ALICE, CAROL], message(subject="offer " + t),
                                   xforward=XFORWARD)
        finally:
            c.quit()
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(res[CAROL][0], 250, res)
        self.assertLanded(ALICE, t, "Junk")
        self.assertLanded(CAROL, t, "INBOX")
        # two downstream deliveries: Dovecot saw one per recipient
        self.dovecot.wait_log(r"lmtp\(%s\).*(stored mail into mailbox 'Junk'|saved mail to Junk)"
                              % re.escape(ALICE), offset=off)
        self.dovecot.wait_log(r"lmtp\(%s\).*(stored mail into mailbox 'INBOX'|saved mail to INBOX)"
                              % re.escape(CAROL), offset=off)

    def test_case33_spam_checks_off_gets_inbox_with_banner(self):
        self.add_rule(rule_doc("Offers", [cond("subject", "contains", ["offer"])], "spam",
                               banner="Probably spam."))
        self.postern.set_user(CAROL, spamcheck="off")
        try:
            t = tag()
            off = self.postern.log_size()
            res = self.deliver([ALICE, CAROL], message(subject="offer " + t))
            self.assertEqual(res[CAROL][0], 250, res)
            self.assertLanded(CAROL, t, "INBOX")
            self.assertLanded(ALICE, t, "Junk")
            m = self.found(CAROL, "INBOX", t)[0]
            self.assertIn(b"\r\n\r\nProbably spam.\r\n\r\nHello Alice,", m)
            self.assertNotIn(b"X-Postern-Folder", m)
            self.postern.wait_log(r'event=delivery .*recipient="%s" .*suppressed=yes'
                                  % re.escape(CAROL), offset=off)
        finally:
            self.postern.set_user(CAROL, spamcheck="inherit")

    def test_case9_regex_caseless(self):
        self.add_rule(rule_doc("Old PHPMailer",
                               [cond("x_mailer", "matches_regex", [r"^PHPMailer\s+[0-5]\."])],
                               "spam"))
        t, t2 = tag(), tag()
        self.deliver([ALICE], message(subject=t, headers=["X-Mailer: phpmailer 5.2.1"]))
        self.deliver([ALICE], message(subject=t2, headers=["X-Mailer: PHPMailer 6.1"]))
        self.assertLanded(ALICE, t, "Junk")
        self.assertLanded(ALICE, t2, "INBOX")

    def test_case17_allow_wins_by_order(self):
        self.add_rule(rule_doc("Trusted", [cond("dmarc", "is", ["pass"])], "allow"))
        self.add_rule(rule_doc("Offers", [cond("subject", "contains", ["offer"])], "spam"))
        t, t2 = tag(), tag()
        self.deliver([ALICE], message(subject="offer " + t, auth="pass"))
        self.deliver([ALICE], message(subject="offer " + t2, auth="fail"))
        self.assertLanded(ALICE, t, "INBOX")
        self.assertLanded(ALICE, t2, "Junk")

    def test_case25_level1_before_level2(self):
        # the level-2 rule is created first: level 1 is still evaluated first
        self.add_rule(rule_doc("Has x", [cond("subject", "contains", ["xx"])], "spam"))
        shown = self.add_rule(rule_doc("Our relay", [cond("sender_ip", "in_cidr",
                                                          ["198.51.100.0/24"])], "allow"))
        self.assertEqual(shown["level"], 1)
        t, t2 = tag(), tag()
        self.deliver([ALICE], message(subject="xx " + t))
        self.deliver([ALICE], message(subject="xx " + t2),
                     xforward=XFORWARD.replace("198.51.100.1", "203.0.113.9"))
        self.assertLanded(ALICE, t, "INBOX")
        self.assertLanded(ALICE, t2, "Junk")

    def test_case29_inactive_rule_ignored(self):
        self.add_rule(rule_doc("Off", [], "reject", status="inactive"))
        t = tag()
        res = self.deliver([ALICE], message(subject=t, auth="pass"))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "INBOX")
        listed = json.loads(self.ctl("rule", "list", "--status", "inactive", "--json").stdout)
        self.assertIn("Off", json.dumps(listed))

    def test_case13_attachment_type(self):
        self.add_rule(rule_doc("No exe", [cond("attachment_type", "is", ["exe"])], "reject",
                               reject_text="Executables are not accepted"))

        def with_attachment(subject, filename, ctype):
            body = ("--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                    "--b\r\nContent-Type: %s\r\n"
                    "Content-Disposition: attachment; filename=\"%s\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b--\r\n" %
                    (ctype, filename, base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()))
            return message(subject=subject, content_type='multipart/mixed; boundary="b"',
                           body=body, auth="pass")

        cases = [("report.pdf.exe", "application/octet-stream", 550),
                 ("report.exe.pdf", "application/pdf", 250),
                 ("a.exe.", "application/octet-stream", 550)]
        for filename, ctype, code in cases:
            t = tag()
            res = self.deliver([ALICE], with_attachment(t, filename, ctype))
            self.assertEqual(res[ALICE][0], code, (filename, res))
            if code == 550:
                self.assertEqual(res[ALICE][1], b"5.7.1 Executables are not accepted")
            self.assertLanded(ALICE, t, "INBOX" if code == 250 else None)

    def test_four_recipients_four_outcomes_one_transaction(self):
        self.add_rule(rule_doc("Alice rejects", [cond("subject", "contains", ["mixed"])],
                               "reject", reject_text="Go away",
                               scope={"mode": "selected", "users": [ALICE]}))
        self.add_rule(rule_doc("Bob quarantines", [cond("subject", "contains", ["mixed"])],
                               "quarantine", scope={"mode": "selected", "users": [BOB]}))
        self.add_rule(rule_doc("Carol junks", [cond("subject", "contains", ["mixed"])],
                               "spam", subject="[J]",
                               scope={"mode": "selected", "users": [CAROL]}))
        t = tag()
        c = lmtp_connect(self.port)
        try:
            res = lmtp_transaction(c, SENDER, [ALICE, BOB, CAROL, DAVE],
                                   message(subject="mixed " + t, auth="pass"),
                                   xforward=XFORWARD)
        finally:
            c.quit()
        self.assertEqual(res[ALICE], (550, b"5.7.1 Go away"))
        self.assertEqual(res[BOB][0], 250, res)
        self.assertEqual(res[CAROL][0], 250, res)
        self.assertEqual(res[DAVE][0], 250, res)
        self.assertLanded(ALICE, t, None)
        self.assertLanded(BOB, t, None)
        self.assertEqual([e["recipient"] for e in self.quarantine("--subject", t)], [BOB])
        self.assertLanded(CAROL, t, "Junk")
        self.assertIn(b"[J]", self.found(CAROL, "Junk", t)[0])
        self.assertLanded(DAVE, t, "INBOX")
        self.assertNotIn(b"[J]", self.found(DAVE, "INBOX", t)[0])

    # -- reject, drop, guard

    def test_case35_reject_text_and_backscatter_guard(self):
        self.add_rule(rule_doc("No x", [cond("subject", "contains", ["x-marks"])], "reject",
                               reject_text="Not accepted"))
        t = tag()
        # DMARC pass: the sender is authenticated, the reject stands
        res = self.deliver([ALICE, DAVE], message(subject="x-marks " + t, auth="pass"))
        self.assertEqual(res[ALICE][0], 550, res)
        self.assertEqual(res[ALICE][1], b"5.7.1 Not accepted")
        self.assertEqual(res[DAVE][0], 550, res)
        self.assertLanded(ALICE, t, None)
        # DMARC and SPF fail: a silent drop (250), nothing delivered, logged
        t2 = tag()
        off = self.postern.log_size()
        res = self.deliver([ALICE], message(subject="x-marks " + t2, auth="fail"))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t2, None)
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rule="No x" .*guarded=yes'
                              % re.escape(ALICE), offset=off)
        # an untrusted A-R (another authserv-id) does not authenticate
        t3 = tag()
        forged = message(subject="x-marks " + t3, auth="pass").replace(
            AUTHSERV.encode() + b";", b"mx.evil.example;")
        res = self.deliver([ALICE], forged)
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t3, None)

    def test_drop(self):
        self.add_rule(rule_doc("Drop it", [cond("subject", "contains", ["dropme"])], "drop"))
        t = tag()
        off = self.postern.log_size()
        res = self.deliver([ALICE, BOB], message(subject="dropme " + t))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(res[BOB][0], 250, res)
        self.assertLanded(ALICE, t, None)
        self.assertLanded(BOB, t, None)
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rule="Drop it" '
                              r'disposition=drop' % re.escape(BOB), offset=off)

    # -- quarantine

    def test_quarantine_list_show_release(self):
        self.add_rule(rule_doc("Hold it", [cond("subject", "contains", ["holdme"])],
                               "quarantine"))
        t = tag()
        # a forged header in the original must not file the release in Junk
        original = message(subject="holdme " + t, headers=["X-Postern-Folder: Junk"])
        res = self.deliver([ALICE, BOB], original)
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertEqual(res[BOB][0], 250, res)
        self.assertLanded(ALICE, t, None)
        self.assertLanded(BOB, t, None)
        entries = self.quarantine("--subject", t)
        self.assertEqual(sorted(e["recipient"] for e in entries), [ALICE, BOB])
        for e in entries:
            self.assertEqual(e["rule"], "Hold it")
            self.assertEqual(e["sender"], SENDER)
            self.assertEqual(e["size"], len(original))
            self.assertEqual(e["client"], "198.51.100.1")
        self.assertEqual(len(self.quarantine("--subject", t, "--rcpt", ALICE)), 1)
        self.assertEqual(len(self.quarantine("--subject", t, "--rule", "other")), 0)
        alice = [e for e in entries if e["recipient"] == ALICE][0]
        # the original bytes, before any modification
        r = self.postern.ctl("quarantine", "show", alice["id"], "--raw", "--dir", self.qdir)
        self.assertEqual(r.stdout.encode(), original)
        # release: straight to the store's LMTP, no rules, into the INBOX
        r = self.ctl("quarantine", "release", alice["id"], "--lmtp",
                     "%s:%d" % (HOST, self.dovecot.lmtp_port), "--dir", self.qdir)
        self.assertIn("released", r.stdout)
        self.assertLanded(ALICE, t, "INBOX")
        m = self.found(ALICE, "INBOX", t)[0]
        self.assertIn(b"X-Postern-Released: %s\r\n" % alice["id"].encode(), m)
        self.assertNotIn(b"X-Postern-Folder", m)
        self.assertLanded(BOB, t, None)
        left = self.quarantine("--subject", t)
        self.assertEqual([e["recipient"] for e in left], [BOB])
        # releasing again: no such entry
        r = self.ctl("quarantine", "release", alice["id"], "--lmtp",
                     "%s:%d" % (HOST, self.dovecot.lmtp_port), "--dir", self.qdir, check=False)
        self.assertEqual(r.returncode, 3, r.stderr)
        # the store refusing: the entry stays
        r = self.ctl("quarantine", "release", left[0]["id"], "--lmtp", "%s:%d" % (HOST, 1),
                     "--dir", self.qdir, check=False)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertEqual(len(self.quarantine("--subject", t)), 1)
        self.ctl("quarantine", "delete", left[0]["id"], "--dir", self.qdir)
        self.assertEqual(self.quarantine("--subject", t), [])
        self.assertEqual([n for n in os.listdir(self.qdir) if alice["file"] in n], [])

    def test_quarantine_release_store_refusals(self):
        # release keeps the entry unless the store's reply for the
        # recipient is 250: 4xx -> exit 75, 5xx -> exit 1
        self.add_rule(rule_doc("Hold", [cond("subject", "contains", ["holdtoo"])],
                               "quarantine"))
        t = tag()
        original = message(subject="holdtoo " + t, body=".leading dot\r\nend\r\n")
        self.assertEqual(self.deliver([ALICE], original)[ALICE][0], 250)
        entry = self.quarantine("--subject", t)[0]
        for final, exit_code in ((452, 75), (554, 1)):
            store = FakeLmtp(final)
            try:
                r = self.ctl("quarantine", "release", entry["id"], "--lmtp",
                             "%s:%d" % (HOST, store.port), "--dir", self.qdir, check=False)
            finally:
                store.stop()
            self.assertEqual(r.returncode, exit_code, r.stderr)
            self.assertEqual(len(self.quarantine("--subject", t)), 1)
            # what the store got: the envelope, the marker, the dot-stuffed
            # original
            self.assertEqual(store.mail_from, SENDER)
            self.assertEqual(store.rcpts, [ALICE])
            self.assertEqual(store.data, b"X-Postern-Released: %s\r\n" % entry["id"].encode() +
                             original.replace(b"\r\n.leading", b"\r\n..leading"))
        store = FakeLmtp(250)
        try:
            r = self.ctl("quarantine", "release", entry["id"], "--lmtp",
                         "%s:%d" % (HOST, store.port), "--dir", self.qdir)
        finally:
            store.stop()
        self.assertEqual(self.quarantine("--subject", t), [])

    def test_case11_size_boundary(self):
        self.add_rule(rule_doc("Big", [cond("mime_size", "gt", ["10"])], "quarantine"),
                      as_json=True)
        limit = 10 * 1048576
        for size, where in ((limit, "INBOX"), (limit + 1, None)):
            t = tag()
            head = message(subject=t, body="")
            line = b"A" * 998 + b"\r\n"
            body = bytearray()
            while len(head) + len(body) + len(line) <= size - 2:
                body += line
            body += b"B" * (size - 2 - len(head) - len(body)) + b"\r\n"
            msg = head + bytes(body)
            self.assertEqual(len(msg), size)
            res = self.deliver([ALICE], msg)
            self.assertEqual(res[ALICE][0], 250, res)
            self.assertLanded(ALICE, t, where)
            q = self.quarantine("--subject", t)
            self.assertEqual(len(q), 0 if where else 1)
            if q:
                self.assertEqual(q[0]["size"], size)

    # -- copies

    def test_case37_forward_copy_and_loop(self):
        self.add_rule(rule_doc("To partner", [cond("subject", "contains", ["fwd"])],
                               forward=[PARTNER], xheaders=[("X-Fwd", "yes")],
                               subject="[FWD]", banner="not on copies"))
        t = tag()
        res = self.deliver([ALICE], message(subject="fwd " + t))
        self.assertEqual(res[ALICE][0], 250, res)
        # the recipient's own delivery: inbox, with the modifiers
        self.assertLanded(ALICE, t, "INBOX")
        mine = self.found(ALICE, "INBOX", t)[0]
        self.assertIn(b"not on copies", mine)
        self.assertNotIn(b"X-Postern-Loop", mine)
        # one copy in the sink, to the partner, with our loop header and the
        # header/subject modifiers but no banner (spec 5.6)
        copies = wait_for(lambda: self.sink.received(t), 10, what="forwarded copy")
        self.assertEqual(len(copies), 1)
        copy = copies[0]
        self.assertEqual(copy["rcpts"], [PARTNER])
        self.assertRegex(copy["data"],
                         rb"X-Postern-Loop: %s; t=\d+;(?:\r\n)? mac=[0-9a-f]{32}\r\n" %
                         re.escape(NODE.encode()))
        self.assertIn(b"X-Fwd: yes\r\n", copy["data"])
        self.assertIn(b"[FWD]", copy["data"])
        self.assertNotIn(b"not on copies", copy["data"])
        self.assertNotIn(b"X-Postern-Folder", copy["data"])
        # the copy comes back to us (say the partner forwards it to bob): it
        # is delivered without rules and never copied again
        res = self.deliver([BOB], copy["data"])
        self.assertEqual(res[BOB][0], 250, res)
        self.assertLanded(BOB, t, "INBOX")
        time.sleep(1.0)
        self.assertEqual(len(self.sink.received(t)), 1)
        back = self.found(BOB, "INBOX", t)[0]
        self.assertNotIn(b"not on copies", back)   # no rule ran on it
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rules=off .*loop=valid'
                              % re.escape(BOB))
        # a message from outside with a forged loop header (our node name,
        # no MAC) still gets its rules: a reject rule rejects it, and a
        # forwarding rule makes no copy of it
        self.add_rule(rule_doc("No forged", [cond("subject", "contains", ["forged-loop"])],
                               "reject", reject_text="Forged loop"))
        t2 = tag()
        off = self.postern.log_size()
        res = self.deliver([BOB], message(subject="forged-loop " + t2, auth="pass",
                                          headers=["X-Postern-Loop: %s" % NODE]))
        self.assertEqual(res[BOB][0], 550, res)
        self.assertEqual(res[BOB][1], b"5.7.1 Forged loop")
        self.assertLanded(BOB, t2, None)
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rule="No forged" .*loop=invalid'
                              % re.escape(BOB), offset=off)
        t3 = tag()
        res = self.deliver([ALICE], message(subject="fwd " + t3,
                                            headers=["X-Postern-Loop: %s" % NODE]))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t3, "INBOX")
        time.sleep(1.0)
        self.assertEqual(self.sink.received(t3), [])

    def test_bcc_copy_and_delivery(self):
        self.add_rule(rule_doc("Bcc audit", [cond("subject", "contains", ["audit-me"])],
                               "spam", bcc=["auditor@example.org"]))
        t = tag()
        res = self.deliver([ALICE], message(subject="audit-me " + t))
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "Junk")
        copies = wait_for(lambda: self.sink.received(t), 10, what="bcc copy")
        self.assertEqual(copies[0]["rcpts"], ["auditor@example.org"])
        self.assertEqual(copies[0]["mail_from"], SENDER)
        # the copy is not the recipient's delivery: no Junk marker
        self.assertNotIn(b"X-Postern-Folder", copies[0]["data"])
        self.assertIn(b"X-Postern-Loop: ", copies[0]["data"])

    # -- sender DNS without a name from the MTA: FCrDNS of the client

    def test_sender_dns_fcrdns(self):
        # 127.0.0.1's PTR is "localhost" (/etc/hosts), which resolves back
        # to 127.0.0.1: confirmed. 192.0.2.1 (TEST-NET-1) has no PTR.
        import socket as _socket
        try:
            ok = (_socket.gethostbyaddr("127.0.0.1")[0] == "localhost" and
                  "127.0.0.1" in _socket.gethostbyname_ex("localhost")[2])
        except OSError:
            ok = False
        if not ok:
            self.skipTest("127.0.0.1 is not localhost <-> 127.0.0.1 here")
        self.add_rule(rule_doc("Local DNS", [cond("sender_dns", "is", ["localhost"])], "spam"))
        # no XFORWARD: the client is the MTA itself, 127.0.0.1
        t = tag()
        res = self.deliver([ALICE], message(subject=t), xforward=None)
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "Junk")
        # XFORWARD NAME=unknown ADDR=192.0.2.1: no PTR, no value, no failure
        t2 = tag()
        res = self.deliver([ALICE], message(subject=t2),
                           xforward="NAME=unknown ADDR=192.0.2.1 PROTO=ESMTP HELO=x.example")
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t2, "INBOX")
        # the MTA's verified name is used as it is (no lookup)
        t3 = tag()
        res = self.deliver([ALICE], message(subject=t3),
                           xforward="NAME=localhost ADDR=192.0.2.1 PROTO=ESMTP HELO=x.example")
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t3, "Junk")

    # -- hostile messages

    def hostile(self, msg, what, timeout=120):
        t0 = time.monotonic()
        res = lmtp_deliver(self.port, SENDER, [ALICE], msg, xforward=XFORWARD, timeout=timeout)
        took = time.monotonic() - t0
        self.assertIn(res[ALICE][0], (250, 451, 550), "%s: %r" % (what, res))
        self.assertLess(took, timeout, what)
        self.assertTrue(self.postern.running(), what)
        return res

    def test_hostile_messages_answered(self):
        # rules that make the engine read the structure and the text
        self.add_rule(rule_doc("Catastrophic", [cond("content", "regex", ["(a+)+$"])], "spam"),
                      as_json=True)
        self.add_rule(rule_doc("Exe", [cond("attachment_type", "is", ["exe"])], "reject"))
        self.add_rule(rule_doc("Banner all", [cond("has_attachment", "is_true")],
                               banner="attachments inside"))
        # 1,000 parts
        t = tag()
        parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                        for i in range(1000))
        self.hostile(message(subject=t, content_type='multipart/mixed; boundary="b"',
                             body=parts + "--b--\r\n"), "1000 parts")
        # 25 nested message/rfc822
        inner = "Subject: innermost\r\nContent-Type: text/plain\r\n\r\ndeep\r\n"
        for i in range(25):
            inner = ("Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % i) + inner
        self.hostile(message(subject=tag(), content_type="message/rfc822", body=inner),
                     "25-deep rfc822")
        # a 20 MB attachment
        blob = base64.encodebytes(os.urandom(15 * 1048576)).replace(b"\n", b"\r\n")
        body = (b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                b"--b\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--b--\r\n")
        t = tag()
        res = self.hostile(message(subject=t, content_type='multipart/mixed; boundary="b"',
                                   body=body), "20 MB attachment")
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertLanded(ALICE, t, "INBOX")
        # the catastrophic regex against 100 KB of text: bounded by the
        # match limit (the condition is false), answered
        t = tag()
        res = self.hostile(message(subject=t, body="a" * 100000 + "!\r\n"), "regex")
        self.assertEqual(res[ALICE][0], 250, res)
        self.assertStillDelivers()


class RulesOffTest(GatewayTestCase):
    """rules.enabled = false: no rule runs, but a forged X-Postern-Folder:
    Junk from outside must still never reach Dovecot's sieve_before."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DeliveryDovecot(name="dovecot-rules-off", sieve_before=JUNK_SIEVE).start()
        try:
            cls.postern = DeliveryPostern(
                cls.dovecot, [LmtpListener()], name="postern-rules-off",
                rules={"enabled": False, "node": NODE}).start()
        except Exception:
            cls.dovecot.stop()
            raise

    found = RulesTest.found
    where = RulesTest.where
    assertLanded = RulesTest.assertLanded

    def test_forged_folder_header_stripped_with_rules_off(self):
        t = tag()
        self.postern.ctl("rule", "create", *rule_options(
            rule_doc("Never", [cond("subject", "contains", [t])], "reject")))
        res = lmtp_deliver(self.postern.lmtp(trusted=True).port, SENDER, [ALICE],
                           message(subject=t, headers=["X-Postern-Folder: Junk",
                                                       "X-Postern-Rule: forged"]),
                           xforward=XFORWARD)
        self.assertEqual(res[ALICE][0], 250, res)   # the reject rule did not run
        self.assertLanded(ALICE, t, "INBOX")
        m = self.found(ALICE, "INBOX", t)[0]
        self.assertNotIn(b"X-Postern-Folder", m)
        self.assertNotIn(b"forged", m)
        self.postern.wait_log(r'event=delivery .*recipient="%s" .*rules=off' % re.escape(ALICE))


class RulesDataPathsTest(GatewayTestCase):
    """rules.language_models and rules.location_database are applied at
    startup: pointed at an empty directory and a missing file, a rule on
    the language or the country cannot be evaluated (451 4.3.0, the MTA
    retries), while a message no such rule needs is delivered."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DeliveryDovecot(name="dovecot-rules-data").start()
        empty = os.path.join(run_root(), "no-models")
        os.makedirs(empty, exist_ok=True)
        try:
            cls.postern = DeliveryPostern(
                cls.dovecot, [LmtpListener()], name="postern-rules-data",
                rules={"enabled": True, "node": NODE, "language_models": empty,
                       "location_database": os.path.join(empty, "missing.db")}).start()
        except Exception:
            cls.dovecot.stop()
            raise

    def test_missing_data_fails_the_rules_that_need_it(self):
        port = self.postern.lmtp(trusted=True).port
        self.postern.ctl("rule", "create", "--name", "German", "--if", "language is de",
                         "--action", "spam", "--mode", "selected", "--users", ALICE)
        self.postern.ctl("rule", "create", "--name", "From NL", "--if", "country is NL",
                         "--action", "spam", "--mode", "selected", "--users", BOB)
        text = ("Dies ist eine deutsche Nachricht mit genug Text, damit die Sprache "
                "sicher erkannt werden kann, und noch ein paar weitere Worte.\r\n")
        res = lmtp_deliver(port, SENDER, [ALICE], message(subject=tag(), body=text),
                           xforward=XFORWARD)
        self.assertEqual(res[ALICE][0], 451, res)
        # a public address (a reserved one is "ZZ" without the database)
        res = lmtp_deliver(port, SENDER, [BOB], message(subject=tag(), to=BOB),
                           xforward=XFORWARD.replace("198.51.100.1", "192.0.32.10"))
        self.assertEqual(res[BOB][0], 451, res)
        res = lmtp_deliver(port, SENDER, [CAROL], message(subject=tag(), to=CAROL),
                           xforward=XFORWARD)
        self.assertEqual(res[CAROL][0], 250, res)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The HTML and URL conditions (issue 6) end to end: rules made with the
real posternctl, messages delivered by LMTP through postern's delivery hop
to a real Dovecot, and where each landed read back over IMAP and from the
quarantine: JavaScript (entity-encoded scheme, event handler), frame and
form tags, web bugs (remote 1x1 against a cid: 1x1), shortened URLs
(BIT.LY. with a trailing dot, a Safe Links URL is no shortener), URL
domains with the label-aligned subdomain operator (spec case 41:
login.example.com.evil.net is not within example.com; userinfo does not
hide the host), and the rule-test trace of the normalised URLs."""

import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import RulesGatewayTestCase, lmtp_deliver, main  # noqa: E402

ALICE = "alice@example.com"
SENDER = "x@ext.example"
AUTHSERV = "mx.example.com"


def tag():
    return "h" + uuid.uuid4().hex[:12]


def message(subject, html=None, text="Hello."):
    """A message (CRLF): text/plain alone, or multipart/alternative with
    the HTML."""
    head = ["From: Sender <%s>" % SENDER, "To: %s" % ALICE, "Subject: %s" % subject,
            "Date: Mon, 01 Jan 2024 00:00:00 +0000",
            "Message-ID: <%s@ext.example>" % uuid.uuid4().hex, "MIME-Version: 1.0"]
    if html is None:
        head.append("Content-Type: text/plain; charset=utf-8")
        return ("\r\n".join(head) + "\r\n\r\n" + text + "\r\n").encode()
    head.append('Content-Type: multipart/alternative; boundary="b1"')
    parts = ["--b1", "Content-Type: text/plain; charset=utf-8", "", text,
             "--b1", "Content-Type: text/html; charset=utf-8", "", html, "--b1--", ""]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(parts)).encode()


class HtmlUrlRulesTest(RulesGatewayTestCase):

    name = "hu"

    @classmethod
    def rules_config(cls):
        return {"enabled": True, "authserv_id": AUTHSERV, "backscatter_guard": True,
                "quarantine_directory": cls.qdir, "node": "mx-test.example.com"}

    def deliver(self, msg):
        res = lmtp_deliver(self.port, SENDER, [ALICE], msg)
        self.assertEqual(res[ALICE][0], 250, res)
        return res

    def landed(self, needle):
        return self.landed_in(ALICE, needle)

    def test_html_flags(self):
        self.rule("Scripts", "javascript is_true", "quarantine")
        self.rule("Frames", "frame_tags is_true", "xheader=X-Frames:yes")
        self.rule("Web bugs", "web_bugs is_true", "spam")
        t = {k: tag() for k in ("entity", "handler", "iframe", "form", "bug", "cid", "clean")}
        self.deliver(message(t["entity"], '<a href="&#106;ava&#x09;script:alert(1)">x</a>'))
        self.deliver(message(t["handler"], '<p>x</p><img src=x onerror=alert(1)>'))
        self.deliver(message(t["iframe"], '<iframe src="https://f.example/"></iframe>'))
        self.deliver(message(t["form"], '<form action="https://f.example/p"><input></form>'))
        self.deliver(message(t["bug"],
                             '<p>News</p><img width="1" height="1" '
                             'src="https://t.example/p.gif">'))
        self.deliver(message(t["cid"],
                             '<p>Logo</p><img width="1" height="1" src="cid:logo@x.example">'))
        self.deliver(message(t["clean"],
                             '<p>Use the javascript: scheme &lt;script&gt; in text</p>'
                             '<img src="https://img.example/big.png" width="600">'))
        for k in ("entity", "handler"):
            self.assertEqual(self.landed(t[k]), (None, None), k)
            q = self.quarantined(t[k])
            self.assertEqual(len(q), 1, k)
            self.assertEqual(q[0]["rule"], "Scripts")
        for k in ("iframe", "form"):
            folder, h = self.landed(t[k])
            self.assertEqual(folder, "INBOX", k)
            self.assertIn(b"X-Frames: yes", h, k)
        self.assertEqual(self.landed(t["bug"])[0], "Junk")
        for k in ("cid", "clean"):
            folder, h = self.landed(t[k])
            self.assertEqual(folder, "INBOX", k)
            self.assertNotIn(b"X-Frames", h, k)

    def test_urls(self):
        self.rule("Example links", "url_domain is_subdomain_of example.com",
                  "xheader=X-Example:yes")
        self.rule("Evil host", "url_domain is evil.example", "spam")
        self.rule("Short", "short_url is_true", "xheader=X-Short:yes")
        t = {k: tag() for k in ("sub", "lookalike", "userinfo", "short", "safelinks")}
        self.deliver(message(t["sub"], '<a href="https://LOGIN.Example.COM./x">x</a>'))
        self.deliver(message(t["lookalike"],
                             '<a href="https://login.example.com.evil.net/">x</a>'))
        self.deliver(message(t["userinfo"],
                             '<a href="https://example.com@Evil.Example/login">x</a>'))
        self.deliver(message(t["short"], text="Go to https://BIT.LY./3xYz now."))
        self.deliver(message(t["safelinks"],
                             text="https://nam12.safelinks.protection.outlook.com/?url=x"))
        folder, h = self.landed(t["sub"])
        self.assertEqual(folder, "INBOX")
        self.assertIn(b"X-Example: yes", h)
        folder, h = self.landed(t["lookalike"])      # spec case 41
        self.assertEqual(folder, "INBOX")
        self.assertNotIn(b"X-Example", h)
        self.assertEqual(self.landed(t["userinfo"])[0], "Junk")
        folder, h = self.landed(t["short"])
        self.assertEqual(folder, "INBOX")
        self.assertIn(b"X-Short: yes", h)
        folder, h = self.landed(t["safelinks"])
        self.assertEqual(folder, "INBOX")
        self.assertNotIn(b"X-Short", h)

    def test_rule_test_trace(self):
        """posternctl rule test traces the normalised URLs and hosts."""
        self.rule("Evil host", "url_domain is evil.example", "spam")
        self.rule("Scripts", "javascript is_true", "quarantine")
        path = os.path.join(self.postern.dir, "m-%s.eml" % uuid.uuid4().hex[:8])
        with open(path, "wb") as f:
            f.write(message(tag(), '<a href="http://0x7f000001/a">x</a>',
                            text="See https://paypal.com@evil.example/"))
        r = self.ctl("rule", "test", "--eml", path, "--from", SENDER, "--rcpt", ALICE)
        self.assertIn('"evil.example"', r.stdout)
        self.assertIn('"127.0.0.1"', r.stdout)
        self.assertIn("Evil host", r.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The language, originating-country and Office-macro conditions (issue 6)
end to end: rules made with the real posternctl, messages delivered by LMTP
(with XFORWARD ADDR) through postern's delivery hop to a real Dovecot, and
where each landed read back over IMAP and from the quarantine.

The Office documents are the fuzz seeds of tests/fuzz/corpus/macro/ (built
with libgsf's writers by the unit tests' builders; their first byte is the
fuzzer's mode byte and is dropped here): a Word document whose VBA module
has AutoOpen + Shell (suspicious), an Excel workbook with a harmless
module (macros only), a stomped project (no source: macros, not
suspicious), a .docm (zip with word/vbaProject.bin) and a .ppt whose
project is compressed inside its PowerPoint Document stream."""

import base64
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRC, RulesGatewayTestCase, lmtp_deliver, main  # noqa: E402

ALICE = "alice@example.com"
SENDER = "x@ext.example"
AUTHSERV = "mx.example.com"
CORPUS = os.path.join(SRC, "tests", "fuzz", "corpus", "macro")

GERMAN = ("Sehr geehrte Damen und Herren, vielen Dank f\u00fcr Ihre Anfrage vom "
          "letzten Montag. Wir freuen uns, Ihnen mitteilen zu k\u00f6nnen, dass die "
          "bestellten Waren bereits heute an Sie verschickt wurden. Die Rechnung "
          "finden Sie im Anhang dieser Nachricht.")
ENGLISH = ("Dear colleagues, please find attached the quarterly report for the sales "
           "department. We would like to thank everyone who contributed to the "
           "results of this year. The meeting has been moved to next Thursday.")


def tag():
    return "g" + uuid.uuid4().hex[:12]


def xforward(addr):
    return "NAME=mail.ext.example ADDR=%s PROTO=ESMTP HELO=mail.ext.example" % addr


def document(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()[1:]


def message(subject, body=ENGLISH, attachment=None):
    """A message (CRLF); attachment: (filename, content type, bytes)."""
    head = ["From: Sender <%s>" % SENDER, "To: %s" % ALICE, "Subject: %s" % subject,
            "Date: Mon, 01 Jan 2024 00:00:00 +0000",
            "Message-ID: <%s@ext.example>" % uuid.uuid4().hex, "MIME-Version: 1.0"]
    if attachment is None:
        head.append("Content-Type: text/plain; charset=utf-8")
        head.append("Content-Transfer-Encoding: 8bit")
        return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()
    fname, ctype, data = attachment
    b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
    head.append('Content-Type: multipart/mixed; boundary="b1"')
    parts = ["--b1", "Content-Type: text/plain; charset=utf-8", "", body,
             "--b1", 'Content-Type: %s; name="%s"' % (ctype, fname),
             'Content-Disposition: attachment; filename="%s"' % fname,
             "Content-Transfer-Encoding: base64", "", b64, "--b1--", ""]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(parts)).encode()


class LangGeoMacroRulesTest(RulesGatewayTestCase):

    name = "lgm"

    @classmethod
    def rules_config(cls):
        return {"enabled": True, "authserv_id": AUTHSERV, "backscatter_guard": True,
                "quarantine_directory": cls.qdir, "node": "mx-test.example.com"}

    def deliver(self, msg, addr="198.51.100.1"):
        res = lmtp_deliver(self.port, SENDER, [ALICE], msg, xforward=xforward(addr))
        self.assertEqual(res[ALICE][0], 250, res)
        return res

    def landed(self, needle):
        return self.landed_in(ALICE, needle)

    def test_language(self):
        self.rule("German", "language is de", "spam")
        t1, t2, t3 = tag(), tag(), tag()
        self.deliver(message(t1, GERMAN))
        self.deliver(message(t2, ENGLISH))
        self.deliver(message(t3, "Kurz."))     # too short: und
        self.assertEqual(self.landed(t1)[0], "Junk")
        self.assertEqual(self.landed(t2)[0], "INBOX")
        self.assertEqual(self.landed(t3)[0], "INBOX")
        # is_not: everything but English, und included
        self.ctl("rule", "delete", "--all")
        self.rule("Not English", "language is_not en", "xheader=X-Lang:other")
        t4, t5 = tag(), tag()
        self.deliver(message(t4, GERMAN))
        self.deliver(message(t5, ENGLISH))
        self.assertIn(b"X-Lang: other", self.landed(t4)[1])
        self.assertNotIn(b"X-Lang", self.landed(t5)[1])

    def test_country(self):
        self.rule("From NL", "country is NL", "xheader=X-Country:NL")
        self.rule("Unknown origin", "country is zz", "xheader=X-Country:ZZ")
        t1, t2, t3 = tag(), tag(), tag()
        self.deliver(message(t1), addr="193.0.6.139")      # RIPE NCC, NL
        self.deliver(message(t2), addr="10.20.30.40")      # private
        self.deliver(message(t3), addr="8.8.8.8")          # US
        self.assertIn(b"X-Country: NL", self.landed(t1)[1])
        self.assertIn(b"X-Country: ZZ", self.landed(t2)[1])
        h3 = self.landed(t3)[1]
        self.assertNotIn(b"X-Country", h3)

    def test_macros(self):
        self.rule("Bad macros", "suspicious_macros is_true", "quarantine")
        self.rule("Macros", "macros is_true", "xheader=X-Macros:yes")
        docs = {
            "evil": ("invoice.doc", "application/msword", document("word_evil.doc")),
            "benign": ("report.xls", "application/vnd.ms-excel",
                       document("excel_benign.xls")),
            "stomped": ("stomped.doc", "application/msword", document("stomped.doc")),
            "docm": ("a.docm", "application/vnd.ms-word.document.macroEnabled.12",
                     document("docm.zip")),
            "ppt": ("deck.ppt", "application/vnd.ms-powerpoint",
                    document("ppt_compressed.ppt")),
            "plain": ("notes.txt", "text/plain", b"Sub AutoOpen()\r\nShell \"x\"\r\n"),
        }
        tags = {k: tag() for k in docs}
        for k, att in docs.items():
            self.deliver(message(tags[k], attachment=att))
        # suspicious ones are held
        for k in ("evil", "docm", "ppt"):
            self.assertEqual(self.landed(tags[k]), (None, None), k)
            q = self.quarantined(tags[k])
            self.assertEqual(len(q), 1, k)
            self.assertEqual(q[0]["rule"], "Bad macros")
        # macros without suspicious source (also a stomped project) are marked
        for k in ("benign", "stomped"):
            folder, h = self.landed(tags[k])
            self.assertEqual(folder, "INBOX", k)
            self.assertIn(b"X-Macros: yes", h, k)
        # VBA-looking text in a plain attachment is no macro
        folder, h = self.landed(tags["plain"])
        self.assertEqual(folder, "INBOX")
        self.assertNotIn(b"X-Macros", h)

    def test_rule_test_trace(self):
        """posternctl rule test traces the feature values it saw."""
        self.rule("From FR", "country is FR", "spam")
        self.rule("German", "language is de", "spam")
        path = os.path.join(self.postern.dir, "m-%s.eml" % uuid.uuid4().hex[:8])
        with open(path, "wb") as f:
            f.write(message(tag(), GERMAN))
        r = self.ctl("rule", "test", "--eml", path, "--from", SENDER, "--rcpt", ALICE,
                     "--client", "193.0.6.139")
        self.assertIn('["NL"]', r.stdout)
        self.assertIn('["de"]', r.stdout)
        self.assertIn("German", r.stdout)


if __name__ == "__main__":
    main()

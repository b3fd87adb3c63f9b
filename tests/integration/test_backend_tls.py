#!/usr/bin/env python3
"""TLS to the backend: postern speaks implicit TLS to a Dovecot imaps/pop3s
listener, checks its certificate chain against the configured CA and its
name against tls_name, and refuses (NO [UNAVAILABLE]) a backend whose name
does not match or whose CA is unknown."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, USERS, Dovecot, GatewayTestCase, Listener, Postern,  # noqa: E402
                     RawClient, free_port, imap_quote, main, pki)

ALICE = "alice@example.com"


class TlsDovecot(Dovecot):
    """The private Dovecot with imaps and pop3s listeners on the test PKI's
    mail.example.test certificate (the plaintext ports stay as they are)."""

    def __init__(self, **kw):
        self.imaps_port = free_port()
        self.pop3s_port = free_port()
        super().__init__(name="dovecot-tls", **kw)

    def _write_config(self):
        super()._write_config()
        p = pki()
        with open(self.conf_path, "a") as f:
            f.write("""
ssl = yes
ssl_cert = <%s
ssl_key = <%s
service imap-login {
  inet_listener imaps {
    port = %d
  }
}
service pop3-login {
  inet_listener pop3s {
    port = %d
  }
}
""" % (p.cert, p.key, self.imaps_port, self.pop3s_port))

    def start(self):
        super().start()
        from harness import wait_ports
        wait_ports([self.imaps_port, self.pop3s_port], proc=self.proc, what="dovecot")
        return self


class BackendTlsTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.dovecot = TlsDovecot().start()
        p = pki()
        dv = cls.dovecot
        # a CA that signed nothing here, to be refused
        stranger = os.path.join(os.path.dirname(p.ca_cert), "stranger-ca.pem")
        if not os.path.exists(stranger):
            p._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                       "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", stranger + ".key",
                       "-out", stranger, "-days", "30", "-subj", "/CN=stranger CA")
        tls = {"tls": True, "ca_file": p.ca_cert, "tls_name": "mail.example.test"}
        backends = [
            {"name": "verified", "servers": [(HOST, dv.imaps_port, dv.pop3s_port, tls)]},
            {"name": "wrong-name", "servers": [(HOST, dv.imaps_port, dv.pop3s_port,
                                                dict(tls, tls_name="other.example.test"))]},
            {"name": "wrong-ca", "servers": [(HOST, dv.imaps_port, dv.pop3s_port,
                                              dict(tls, ca_file=stranger))]},
            {"name": "unverified", "servers": [(HOST, dv.imaps_port, dv.pop3s_port,
                                                {"tls": True, "tls_verify": False})]},
        ]
        listeners = [Listener("imap", "implicit", backend=b["name"]) for b in backends]
        listeners += [Listener("pop3", "implicit", backend="verified")]
        try:
            cls.postern = Postern(dv, listeners=listeners, backends=backends,
                                  timeouts={"backend_ms": 5000}).start()
        except Exception:
            cls.tearDownClass()
            raise

    def port(self, pool, protocol="imap"):
        for l in self.postern.listeners:
            if l["backend"] == pool and l["protocol"] == protocol:
                return l.port
        raise KeyError(pool)

    def imap_login(self, pool):
        c = RawClient(self.port(pool), tls=True, timeout=30)
        self.assertTrue(c.readline().startswith(b"* OK"))
        c.send(("a LOGIN %s %s\r\n" % (imap_quote(ALICE), imap_quote(USERS[ALICE]))).encode())
        lines = c.read_until_tagged("a")
        return lines[-1], c

    def test_verified_backend_imap(self):
        off = self.dovecot.log_size()
        tagged, c = self.imap_login("verified")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.send(b"b SELECT INBOX\r\n")
        self.assertTrue(c.read_until_tagged("b")[-1].startswith(b"b OK"))
        c.close()
        # Dovecot saw a TLS connection from postern
        self.dovecot.wait_log(r"imap-login: Info: Login: user=<%s>.*TLS" % ALICE, offset=off)

    def test_verified_backend_pop3(self):
        c = RawClient(self.port("verified", "pop3"), tls=True, timeout=30)
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"USER %s\r\n" % ALICE.encode())
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"PASS %s\r\n" % USERS[ALICE].encode())
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"STAT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.close()

    def test_name_mismatch_refused(self):
        off = self.postern.log_size()
        tagged, c = self.imap_login("wrong-name")
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        c.close()
        self.postern.wait_log(r"event=backend-error .*backend=wrong-name .*error=tls", offset=off)

    def test_unknown_ca_refused(self):
        tagged, c = self.imap_login("wrong-ca")
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        c.close()

    def test_verification_off_by_choice(self):
        tagged, c = self.imap_login("unverified")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Exchange ActiveSync through postern in front of a real SOGo 5.8 (Debian
sogo + sogo-activesync, PostgreSQL, memcached, Dovecot, an SMTP sink),
started by this test from tests/integration/sogo/ in a private directory on
ports below 32768 and stopped at the end.

Real EAS requests (WBXML built with xml2wbxml, responses decoded with
wbxml2xml) over postern's implicit-TLS activesync listener: OPTIONS,
Provision, Settings with DeviceInformation, FolderSync, Sync, a Ping that
hangs and then answers, SendMail (12.1 raw MIME and 14.1 WBXML) reaching the
sink for an allowed user and never for an outgoing-off user, an
ActiveSync-off user refused per version, a wrong password (401, no policy
detail), live enforcement of a hanging Ping, Autodiscover, device records,
and hostile input (the libwbxml crash vector, truncated WBXML, 100 KB of
headers, a lying chunk size, a base64 query that decodes to garbage,
slowloris), device blocking (129) and the device cap (177). The
backend-down case uses a pool whose port nothing listens on; the 451 case
uses a test double (Redirect451Backend), since SOGo never answers 451.

Skips (unittest skip, with the reason) only when SOGo cannot be installed:
not root, or apt-get cannot install the packages. On CI scripts/deps.sh
installs them.
"""

import glob
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, IO_TIMEOUT, GatewayTestCase, Listener, Postern, log,  # noqa: E402
                     main, pki, run_root)

HERE = os.path.dirname(os.path.abspath(__file__))
SOGO_DIR = os.path.join(HERE, "sogo")
REQ = os.path.join(SOGO_DIR, "requests")
PATH = "/Microsoft-Server-ActiveSync"
WBXML = "application/vnd.ms-sync.wbxml"
PASSWORD = "testpass"
DOMAIN = "example.test"
LIVE_BOUND_S = 2.0
ALLOWED_VERSIONS = {"2.5", "12.0", "12.1", "14.0", "14.1"}
SOGO_PACKAGES = ["sogo", "sogo-activesync", "memcached", "postgresql", "dovecot-imapd",
                 "libwbxml2-utils", "python3-aiosmtpd", "nginx"]
# libwbxml2 0.11.8 aborts on this (spec activesync.md 5.5)
CRASH_VECTOR = bytes.fromhex("03016A00454B0288808080000101")


# ---------------------------------------------------------------- helpers

def enc(xml):
    """XML text -> WBXML bytes (03 01 6A 00, no string table)."""
    r = subprocess.run(["xml2wbxml", "-a", "-n", "-o", "-", "-"], input=xml.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0 or not r.stdout.startswith(b"\x03\x01\x6a\x00"):
        raise RuntimeError("xml2wbxml failed: %r" % r.stderr)
    return r.stdout


def dec(data):
    """WBXML bytes -> compact XML text."""
    with tempfile.NamedTemporaryFile(suffix=".wbxml") as f:
        f.write(data)
        f.flush()
        r = subprocess.run(["wbxml2xml", "-l", "ACTIVESYNC", "-m", "0", "-o", "-", f.name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("wbxml2xml failed on %s: %r" % (data.hex(), r.stderr))
    return r.stdout.decode("utf-8", "replace")


def request_xml(name, **subst):
    with open(os.path.join(REQ, name)) as f:
        text = f.read()
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    return text


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers   # lowercase name -> last value
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())


class EasConn:
    """One HTTP/1.1 keep-alive connection to postern over TLS, read and
    written by hand (so hostile bytes can be sent too)."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        self.s = pki().client_context().wrap_socket(sock, server_hostname="mail.example.test")
        self.buf = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def closed(self, timeout=5.0):
        """True when the server closed the connection within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except (OSError, ssl.SSLError):
            return True

    def read_response(self):
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                headers[k.strip().lower()] = v.strip()
            if status == 100:
                continue
            break
        if "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        else:
            body = self.buf
            try:
                while True:
                    chunk = self.s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
            self.buf = b""
        return Response(status, headers, body)

    def request(self, method, target, headers=None, body=b""):
        hdrs = {"Host": "mail.example.test"}
        hdrs.update(headers or {})
        if body or method == "POST":
            hdrs.setdefault("Content-Length", str(len(body)))
        out = "%s %s HTTP/1.1\r\n" % (method, target)
        out += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs.items() if v is not None)
        self.send(out.encode() + b"\r\n" + body)
        return self.read_response()


def free_base():
    """A BASE_PORT whose SOGo ports (+0 +25 +80 +143 +211 +432) are all free
    and below 32768 (the ephemeral range starts there on Linux)."""
    for _ in range(200):
        base = random.randrange(16000, 32000 - 500, 10)
        ok = True
        for off in (0, 25, 80, 143, 211, 432):
            s = socket.socket()
            try:
                s.bind((HOST, base + off))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise RuntimeError("no free port range for SOGo")


def packages_installed():
    for p in SOGO_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if b"install ok installed" not in r.stdout:
            return False
    return True


class Sogo:
    """SOGo and its stack in a private directory (start-sogo-eas.sh)."""

    def __init__(self):
        self.dir = os.path.join(run_root(), "sogo")
        self.env = {}

    def start(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("SOGo cannot be installed/started: not root "
                                    "(start-sogo-eas.sh installs packages and drops privileges)")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        env = dict(os.environ, BASE_PORT=str(free_base()), NUM_USERS="4", SOGO_WORKERS="8",
                   EAS_MAX_PING="120", EAS_INTERNAL="2")
        t = time.time()
        r = subprocess.run(["bash", os.path.join(SOGO_DIR, "start-sogo-eas.sh"), self.dir],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=900)
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0:
            if not packages_installed():
                raise unittest.SkipTest("SOGo cannot be installed here (apt-get failed): %s" %
                                        out.strip().splitlines()[-1:])
            self.stop()
            raise RuntimeError("start-sogo-eas.sh failed:\n%s" % out[-4000:])
        log("SOGo stack up in %.1fs" % (time.time() - t))
        with open(os.path.join(self.dir, "ports.env")) as f:
            for line in f:
                m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
                if m:
                    self.env[m.group(1)] = m.group(2).strip("'\"")
        self.http_port = int(self.env["HTTP_PORT"])
        self.imap_port = int(self.env["IMAP_PORT"])
        self.spool = self.env["SMTP_SPOOL"]
        self.log_path = os.path.join(self.dir, "sogo", "sogo.log")
        return self

    def stop(self):
        r = subprocess.run(["bash", os.path.join(SOGO_DIR, "stop-sogo-eas.sh"), self.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0 or not os.path.isdir(self.dir):
            log("stop-sogo-eas.sh %s (rc %d):\n%s" % (self.dir, r.returncode,
                                                    r.stdout.decode("utf-8", "replace")))

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def sink_has(self, marker, wait=0.0):
        deadline = time.time() + wait
        while True:
            for f in glob.glob(os.path.join(self.spool, "new", "*")):
                try:
                    with open(f, "rb") as fh:
                        if marker.encode() in fh.read():
                            return f
                except OSError:
                    pass
            if time.time() >= deadline:
                return None
            time.sleep(0.2)


class Redirect451Backend:
    """Test double of an ActiveSync server that moved a mailbox: every
    request gets `451` with an X-MS-Location naming the backend's own
    internal URL (SOGo never sends 451, so only a double can produce it on
    demand). Plain HTTP/1.1 on its own thread; counts requests."""

    def __init__(self):
        self.requests = 0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.srv.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(rest) < need:
                    data = conn.recv(65536)
                    if not data:
                        break
                    rest += data
                self.requests += 1
                conn.sendall(b"HTTP/1.1 451 Redirect\r\n"
                             b"X-MS-Location: https://eas-7.backend.internal:8443"
                             b"/Microsoft-Server-ActiveSync\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    def stop(self):
        self.stop_ev.set()
        self.srv.close()
        self.thread.join(5)


class EasPostern(Postern):
    """postern with an implicit-TLS activesync listener in front of SOGo's
    nginx (pool "sogo") and one in front of a port nothing listens on
    (pool "dead")."""

    def __init__(self, sogo_port, dead_port, redirect_port, **kw):
        self.sogo_port = sogo_port
        self.dead_port = dead_port
        self.redirect_port = redirect_port
        listeners = [Listener("activesync", tls="implicit", backend="sogo"),
                     Listener("activesync", tls="implicit", backend="dead"),
                     Listener("activesync", tls="implicit", backend="moved")]
        backends = [{"name": "sogo", "servers": [(HOST, 0, 0)]},
                    {"name": "dead", "servers": [(HOST, 0, 1)], "connect_timeout_ms": 1000},
                    {"name": "moved", "servers": [(HOST, 0, 2)]}]
        super().__init__(dovecot=None, listeners=listeners, backends=backends, name="postern-eas",
                         **kw)

    def config_text(self):
        text = super().config_text()
        text = text.replace("imap_port = 0; pop3_port = 0;", "activesync_port = %d;" % self.sogo_port)
        text = text.replace("imap_port = 0; pop3_port = 1;", "activesync_port = %d;" % self.dead_port)
        text = text.replace("imap_port = 0; pop3_port = 2;", "activesync_port = %d;" %
                            self.redirect_port)
        return text.replace('default_domain = "example.com";', 'default_domain = "%s";' % DOMAIN)


# ---------------------------------------------------------------- tests

class ActiveSyncTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.sogo = Sogo().start()
        try:
            s = socket.socket()
            s.bind((HOST, 0))
            dead = s.getsockname()[1]
            s.close()
            # idle above an hour: hanging Ping/Sync (spec 2.3); short
            # pre-auth bounds for the slowloris case.
            cls.redirect = Redirect451Backend()
            cls.postern = EasPostern(cls.sogo.http_port, dead, cls.redirect.port,
                                     timeouts={"idle": 3700, "preauth": 5, "login": 8,
                                               "backend_ms": 10000}).start()
        except Exception:
            cls.sogo.stop()
            raise
        cls.port = cls.postern.listeners[0].port
        cls.dead_port = cls.postern.listeners[1].port
        cls.moved_port = cls.postern.listeners[2].port
        cls.extra_logs = (cls.sogo,)
        cls.inbox = {}

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.redirect.stop()
            cls.sogo.stop()

    # -- helpers

    def eas(self, cmd, body=b"", user="user1", password=PASSWORD, version="14.1",
            ctype=WBXML, device="ptdev1", query="", conn=None, port=None, headers=None):
        own = conn is None
        c = conn or EasConn(port or self.port)
        try:
            h = {"Authorization": basic(user, password) if user else None,
                 "MS-ASProtocolVersion": version, "Content-Type": ctype,
                 "User-Agent": "postern-test/1.0", "X-MS-PolicyKey": "0"}
            h.update(headers or {})
            target = "%s?Cmd=%s&User=%s&DeviceId=%s&DeviceType=SmartPhone%s" % (
                PATH, cmd, user, device, query)
            return c.request("POST", target, h, body)
        finally:
            if own:
                c.close()

    def options(self, user="user1", password=PASSWORD, port=None):
        c = EasConn(port or self.port)
        try:
            h = {"Authorization": basic(user, password) if user else None}
            return c.request("OPTIONS", PATH, h)
        finally:
            c.close()

    def folder_sync(self, user="user1", device="ptdev1", version="14.1"):
        r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), user=user, device=device,
                     version=version)
        self.assertEqual(r.status, 200, r.body)
        x = dec(r.body)
        m = re.search(r"<Add><ServerId>([^<]*)</ServerId><ParentId>[^<]*</ParentId>"
                      r"<DisplayName>[^<]*</DisplayName><Type>2</Type>", x)
        self.assertIsNotNone(m, x)
        return m.group(1)

    def provision(self, user, device):
        r = self.eas("Provision", enc(request_xml("provision.xml")), user=user, device=device)
        self.assertEqual(r.status, 200)
        return r

    def status_of(self, body):
        m = re.search(r"<Status>(\d+)</Status>", dec(body))
        return int(m.group(1)) if m else None

    # -- OPTIONS, credentials

    def test_options_versions_capped(self):
        r = self.options()
        self.assertEqual(r.status, 200)
        versions = set(v.strip() for v in r.header("MS-ASProtocolVersions").split(","))
        self.assertTrue(versions)
        self.assertTrue(versions <= ALLOWED_VERSIONS, versions)
        self.assertIn("14.1", versions)
        self.assertNotIn("Find", r.header("MS-ASProtocolCommands").split(","))

    def test_options_without_credentials_401(self):
        r = self.options(user=None)
        self.assertEqual(r.status, 401)
        self.assertIn("basic", r.header("WWW-Authenticate").lower())

    def test_wrong_password_401_and_no_policy_detail(self):
        # user2 has ActiveSync off: a wrong password must not reveal it
        self.postern.set_user("user2@%s" % DOMAIN, activesync="off")
        try:
            for v in ("14.1", "12.1"):
                r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), user="user2",
                             password="wrong", version=v)
                self.assertEqual(r.status, 401)
                self.assertNotIn(b"126", r.body)
                self.assertNotEqual(r.header("Content-Type"), WBXML)
            self.assertEqual(self.options(user="user2", password="wrong").status, 401)
        finally:
            self.postern.ctl("user", "set", "user2@%s" % DOMAIN, "activesync=inherit")

    # -- a whole conversation

    def test_conversation_provision_settings_foldersync_sync_ping(self):
        dev = "ptconv%d" % os.getpid()
        self.provision("user1", dev)
        st = enc(request_xml("settings-devinfo.xml", MODEL="Pixel Test", OS="Android 14"))
        r = self.eas("Settings", st, device=dev)
        self.assertEqual(r.status, 200)
        inbox = self.folder_sync(device=dev)
        # Sync 0, then until quiet
        s0 = enc(request_xml("sync-init.xml", COLLECTION_ID=inbox))
        r = self.eas("Sync", s0, device=dev)
        self.assertEqual(r.status, 200)
        key = re.search(r"<SyncKey>([^<]*)</SyncKey>", dec(r.body)).group(1)
        for _ in range(4):
            r = self.eas("Sync", enc(request_xml("sync-get.xml", COLLECTION_ID=inbox,
                                                 SYNC_KEY=key)), device=dev)
            self.assertEqual(r.status, 200)
            if not r.body:
                break
            key = re.search(r"<SyncKey>([^<]*)</SyncKey>", dec(r.body)).group(1)
        # a Ping that hangs for its heartbeat, then answers Status 1
        ping = enc(request_xml("ping.xml", COLLECTION_ID=inbox, HEARTBEAT=10))
        t = time.time()
        r = self.eas("Ping", ping, device=dev)
        took = time.time() - t
        self.assertEqual(r.status, 200)
        self.assertEqual(self.status_of(r.body), 1)
        self.assertGreater(took, 8.0)
        # a Ping answered by a change (a message APPENDed over IMAP)
        msg = os.path.join(run_root(), "ping-%s.eml" % dev)
        with open(msg, "w") as f:
            f.write("From: p@%s\r\nTo: user1@%s\r\nSubject: during ping %s\r\n\r\nhi\r\n" %
                    (DOMAIN, DOMAIN, dev))
        appender = subprocess.Popen(
            ["sh", "-c", "sleep 2; curl -s -m 20 -T %s imap://127.0.0.1:%d/INBOX -u user1:%s" %
             (msg, self.sogo.imap_port, PASSWORD)])
        ping = enc(request_xml("ping.xml", COLLECTION_ID=inbox, HEARTBEAT=30))
        t = time.time()
        r = self.eas("Ping", ping, device=dev)
        appender.wait(30)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.status_of(r.body), 2, dec(r.body))
        self.assertLess(time.time() - t, 28)
        # the device was recorded with what Settings said
        out = self.postern.ctl("device", "list", "user1@%s" % DOMAIN).stdout
        line = [ln for ln in out.splitlines() if dev in ln]
        self.assertTrue(line, out)
        self.assertIn('model="Pixel Test"', line[0])
        self.assertIn('os="Android 14"', line[0])
        self.assertIn("version=14.1", line[0])

    def test_keep_alive_several_requests_one_connection(self):
        c = EasConn(self.port)
        try:
            h = {"Authorization": basic("user1", PASSWORD)}
            self.assertEqual(c.request("OPTIONS", PATH, h).status, 200)
            for _ in range(3):
                r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), conn=c)
                self.assertEqual(r.status, 200)
                self.assertEqual(self.status_of(r.body), 1)
        finally:
            c.close()

    def test_base64_query(self):
        # 14.1 FolderSync, device "PTB64", type SmartPhone, policy key 0
        import base64
        raw = bytes([141, 9, 0x09, 0x04, 5]) + b"PTB64" + bytes([4, 0, 0, 0, 0, 10]) + b"SmartPhone"
        q = base64.b64encode(raw).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        c = EasConn(self.port)
        try:
            r = c.request("POST", "%s?%s" % (PATH, q),
                          {"Authorization": basic("user1", PASSWORD), "Content-Type": WBXML},
                          enc(request_xml("foldersync.xml")))
            self.assertEqual(r.status, 200)
            self.assertEqual(self.status_of(r.body), 1)
        finally:
            c.close()

    # -- SendMail

    def sendmail14(self, user, cid):
        with open(os.path.join(REQ, "sendmail.eml")) as f:
            mime = f.read().replace("@CLIENT_ID@", cid).replace("@DATE@", "Mon, 23 Nov 2026 10:00:00 +0000")
            mime = mime.replace("user1@", "%s@" % user)
        import base64
        xml = request_xml("sendmail.xml", CLIENT_ID=cid,
                          MIME_BASE64=base64.b64encode(mime.encode()).decode())
        return self.eas("SendMail", enc(xml), user=user, device="ptmail")

    def sendmail12(self, user, cid):
        mime = ("From: %s@%s\r\nTo: user2@%s\r\nSubject: 12.1 %s\r\nMessage-ID: <%s@%s>\r\n\r\n"
                "ClientId %s\r\n" % (user, DOMAIN, DOMAIN, cid, cid, DOMAIN, cid)).encode()
        return self.eas("SendMail", mime, user=user, version="12.1", ctype="message/rfc822",
                        device="ptmail", query="&SaveInSent=T")

    def test_sendmail_allowed_reaches_sink(self):
        cid = "pt14-%d-%d" % (os.getpid(), int(time.time()))
        r = self.sendmail14("user1", cid)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertIsNotNone(self.sogo.sink_has("ClientId %s" % cid, wait=15))
        cid = "pt12-%d-%d" % (os.getpid(), int(time.time()))
        r = self.sendmail12("user1", cid)
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(self.sogo.sink_has("ClientId %s" % cid, wait=15))

    def test_sendmail_big_streamed_with_expect_continue(self):
        """A 6 MB 12.1 SendMail (EAS_BIG_MB=4 MB of random data, base64),
        chunked, after Expect: 100-continue: streamed through (postern's
        memory grows by less than half the message) and delivered whole."""
        import base64
        cid = "ptbig-%d-%d" % (os.getpid(), int(time.time()))
        raw_mb = int(os.environ.get("EAS_BIG_MB", "4"))   # a bigger one: EAS_BIG_MB=30
        blob = base64.encodebytes(os.urandom(raw_mb * 1024 * 1024)).replace(b"\n", b"\r\n")
        mime = ("From: user1@%s\r\nTo: user2@%s\r\nSubject: big %s\r\nMIME-Version: 1.0\r\n"
                "Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\n"
                "Content-Type: text/plain\r\n\r\nClientId %s\r\n--BB\r\n"
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                % (DOMAIN, DOMAIN, cid, cid)).encode() + blob + b"\r\n--BB--\r\n"
        rss_before = self.rss_kb()
        c = EasConn(self.port, timeout=60)
        try:
            head = ("POST %s?Cmd=SendMail&User=user1&DeviceId=ptbig&DeviceType=SmartPhone&SaveInSent=F "
                    "HTTP/1.1\r\nHost: mail.example.test\r\nAuthorization: %s\r\n"
                    "MS-ASProtocolVersion: 12.1\r\nContent-Type: message/rfc822\r\n"
                    "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n" %
                    (PATH, basic("user1", PASSWORD)))
            c.send(head.encode())
            while b"\r\n\r\n" not in c.buf:
                c._fill()
            self.assertTrue(c.buf.startswith(b"HTTP/1.1 100 "), c.buf[:80])
            c.buf = c.buf.split(b"\r\n\r\n", 1)[1]
            for off in range(0, len(mime), 65536):
                piece = mime[off:off + 65536]
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
        finally:
            c.close()
        f = self.sogo.sink_has("ClientId %s" % cid, wait=30)
        self.assertIsNotNone(f)
        self.assertGreater(os.path.getsize(f), len(blob) * 0.97)   # whole (LF line ends)
        grew = self.rss_kb() - rss_before
        if self.sanitized():
            return   # ASan's quarantine keeps freed memory: RSS says nothing
        # never the whole message in memory (the bound per upload is about
        # EAS_BACKEND_AHEAD_MAX plus what the loop reads before the pause)
        self.assertLess(grew, len(mime) // 2048, "postern grew %d KiB for a %d MB message" %
                        (grew, len(mime) >> 20))

    def sanitized(self):
        with open(self.postern.proc.args[0], "rb") as f:
            return b"__asan_init" in f.read()

    def rss_kb(self):
        with open("/proc/%d/status" % self.postern.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def test_sendmail_outgoing_off_refused_never_sent(self):
        self.postern.set_user("user3@%s" % DOMAIN, outgoing="off")
        try:
            cid14 = "pt14off-%d-%d" % (os.getpid(), int(time.time()))
            r = self.sendmail14("user3", cid14)
            self.assertEqual(r.status, 200)
            x = dec(r.body)
            self.assertIn("<SendMail", x)
            self.assertEqual(self.status_of(r.body), 130)
            cid12 = "pt12off-%d-%d" % (os.getpid(), int(time.time()))
            r = self.sendmail12("user3", cid12)
            self.assertEqual(r.status, 403)
            # everything else still works for that user
            self.folder_sync(user="user3", device="ptmail3")
            time.sleep(3)
            self.assertIsNone(self.sogo.sink_has("ClientId %s" % cid14))
            self.assertIsNone(self.sogo.sink_has("ClientId %s" % cid12))
        finally:
            self.postern.ctl("user", "set", "user3@%s" % DOMAIN, "outgoing=inherit")

    # -- ActiveSync off

    def test_activesync_off_refused_per_version(self):
        self.postern.set_user("user2@%s" % DOMAIN, activesync="off")
        try:
            fs = enc(request_xml("foldersync.xml"))
            r = self.eas("FolderSync", fs, user="user2", version="14.1")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), WBXML)
            self.assertIn("<FolderSync", dec(r.body))
            self.assertEqual(self.status_of(r.body), 126)
            r = self.eas("Provision", enc(request_xml("provision.xml")), user="user2")
            self.assertEqual(self.status_of(r.body), 126)
            for v in ("12.1", "12.0", "2.5"):
                r = self.eas("FolderSync", fs, user="user2", version=v)
                self.assertEqual(r.status, 403, v)
            self.assertEqual(self.options(user="user2").status, 403)
        finally:
            self.postern.ctl("user", "set", "user2@%s" % DOMAIN, "activesync=inherit")
        self.folder_sync(user="user2", device="ptback")

    def test_device_blocked_129_and_cap_177(self):
        """posternctl device block: that device gets Status 129 (403 at
        12.1) while the user's other devices work; device limit: a new
        device past the cap gets 177 and is not recorded."""
        user = "user2"
        addr = "%s@%s" % (user, DOMAIN)
        self.folder_sync(user=user, device="ptblk1")
        self.folder_sync(user=user, device="ptblk2")
        listed = self.postern.ctl("device", "list", addr).stdout
        m = re.search(r"^\S+ (\S*ptblk1\S*) ", listed, re.M | re.I)
        self.assertIsNotNone(m, listed)
        self.postern.ctl("device", "block", addr, m.group(1))
        try:
            fs = enc(request_xml("foldersync.xml"))
            r = self.eas("FolderSync", fs, user=user, device="ptblk1")
            self.assertEqual(r.status, 200)
            self.assertEqual(self.status_of(r.body), 129)
            r = self.eas("FolderSync", fs, user=user, device="ptblk1", version="12.1")
            self.assertEqual(r.status, 403)
            self.folder_sync(user=user, device="ptblk2")   # the other device works
            self.assertIn("state=blocked", self.postern.ctl("device", "list", addr).stdout)
        finally:
            self.postern.ctl("device", "allow", addr, m.group(1))
        self.folder_sync(user=user, device="ptblk1")
        n = len(self.postern.ctl("device", "list", addr).stdout.splitlines())
        self.postern.ctl("device", "limit", str(n))
        try:
            r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), user=user,
                         device="ptblk3")
            self.assertEqual(r.status, 200)
            self.assertEqual(self.status_of(r.body), 177)
            self.assertNotIn("ptblk3", self.postern.ctl("device", "list", addr).stdout.lower())
            self.folder_sync(user=user, device="ptblk2")   # known devices go on
        finally:
            self.postern.ctl("device", "limit", "0")
        self.folder_sync(user=user, device="ptblk3")

    def test_live_enforcement_ends_hanging_ping(self):
        user = "user4"
        inbox = self.folder_sync(user=user, device="ptlive")
        ping = enc(request_xml("ping.xml", COLLECTION_ID=inbox, HEARTBEAT=60))
        c = EasConn(self.port)
        try:
            h = {"Authorization": basic(user, PASSWORD), "MS-ASProtocolVersion": "14.1",
                 "Content-Type": WBXML, "Content-Length": str(len(ping))}
            target = "%s?Cmd=Ping&User=%s&DeviceId=ptlive&DeviceType=SmartPhone" % (PATH, user)
            c.send(("POST %s HTTP/1.1\r\nHost: mail.example.test\r\n" % target).encode() +
                   "".join("%s: %s\r\n" % kv for kv in h.items()).encode() + b"\r\n" + ping)
            time.sleep(3)   # the Ping hangs at SOGo now
            self.postern.set_user("%s@%s" % (user, DOMAIN), activesync="off")
            t = time.time()
            c.s.settimeout(10)
            r = c.read_response()
            took = time.time() - t
            self.assertEqual(r.status, 200)
            self.assertEqual(self.status_of(r.body), 126)
            self.assertLess(took, LIVE_BOUND_S + 0.5)
        finally:
            c.close()
            self.postern.ctl("user", "set", "%s@%s" % (user, DOMAIN), "activesync=inherit")

    # -- Autodiscover

    def test_autodiscover_answered_locally(self):
        body = ('<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.'
                'microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"><Request>'
                '<EMailAddress>user1@example.test</EMailAddress><AcceptableResponseSchema>http://'
                'schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006'
                '</AcceptableResponseSchema></Request></Autodiscover>').encode()
        c = EasConn(self.port)
        try:
            h = {"Authorization": basic("user1", PASSWORD), "Content-Type": "text/xml"}
            r = c.request("POST", "/autodiscover/autodiscover.xml", h, body)
            self.assertEqual(r.status, 200)
            self.assertIn(b"<Url>https://mail.example.test/Microsoft-Server-ActiveSync</Url>", r.body)
            self.assertNotIn(str(self.sogo.http_port).encode(), r.body)
            h["Authorization"] = basic("user1", "wrong")
            self.assertEqual(c.request("POST", "/autodiscover/autodiscover.xml", h, body).status, 401)
        finally:
            c.close()

    # -- failures and hostile input

    def test_backend_451_location_rewritten(self):
        """A backend's 451 reaches the client with X-MS-Location pointing at
        postern's own public URL; the backend's internal name never leaks
        (Redirect451Backend is a test double: SOGo never answers 451)."""
        before = self.redirect.requests
        r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), port=self.moved_port)
        self.assertEqual(r.status, 451)
        self.assertEqual(r.header("X-MS-Location"),
                         "https://mail.example.test/Microsoft-Server-ActiveSync")
        for k, v in r.headers.items():
            self.assertNotIn("backend.internal", v, k)
        self.assertNotIn(b"backend.internal", r.body)
        self.assertEqual(self.redirect.requests, before + 1)

    def test_backend_down_503_retry_after(self):
        r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), port=self.dead_port)
        self.assertEqual(r.status, 503)
        self.assertTrue(r.header("Retry-After").isdigit())

    def assertServes(self):
        self.assertEqual(self.options().status, 200)

    def test_hostile_libwbxml_crash_vector(self):
        r = self.eas("Sync", CRASH_VECTOR)
        self.assertEqual(r.status, 400)
        r = self.eas("Settings", CRASH_VECTOR)
        self.assertEqual(r.status, 400)
        self.assertTrue(self.postern.running())
        self.assertServes()
        self.folder_sync()   # and SOGo is alive too

    def test_hostile_truncated_wbxml(self):
        fs = enc(request_xml("foldersync.xml"))
        r = self.eas("FolderSync", fs[:-1])
        self.assertEqual(r.status, 400)
        self.assertServes()

    def test_hostile_100k_headers_431(self):
        c = EasConn(self.port)
        try:
            c.send(b"POST %s?Cmd=Sync&User=u&DeviceId=d&DeviceType=t HTTP/1.1\r\nHost: x\r\n" %
                   PATH.encode())
            try:
                for i in range(1000):
                    c.send(b"X-Pad-%d: %s\r\n" % (i, b"a" * 90))
            except OSError:
                pass   # postern may close before all of it is sent
            r = c.read_response()
            self.assertEqual(r.status, 431)
            self.assertTrue(c.closed())
        finally:
            c.close()
        self.assertServes()

    def test_hostile_lying_chunk_size(self):
        c = EasConn(self.port)
        try:
            h = ("POST %s?Cmd=FolderSync&User=user1&DeviceId=ptchunk&DeviceType=SmartPhone HTTP/1.1\r\n"
                 "Host: x\r\nAuthorization: %s\r\nMS-ASProtocolVersion: 14.1\r\n"
                 "Content-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n" %
                 (PATH, basic("user1", PASSWORD), WBXML)).encode()
            fs = enc(request_xml("foldersync.xml"))
            # says 3 bytes, sends the whole document
            c.send(h + b"3\r\n" + fs + b"\r\n0\r\n\r\n")
            try:
                r = c.read_response()
                self.assertEqual(r.status, 400)
            except (EOFError, OSError):
                pass   # a close is a fine answer too
            self.assertTrue(c.closed())
        finally:
            c.close()
        # an honest chunked request works
        c = EasConn(self.port)
        try:
            c.send(h + b"%x\r\n" % len(fs) + fs + b"\r\n0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(self.status_of(r.body), 1)
        finally:
            c.close()

    def test_hostile_bad_base64_query_400(self):
        c = EasConn(self.port)
        try:
            h = {"Authorization": basic("user1", PASSWORD), "Content-Type": WBXML}
            for q in ("jQAJBP%2F%2F%2F%2F", "AAAA", "%%%%", "jRIJBAtURVNU"):
                r = c.request("POST", "%s?%s" % (PATH, q), h, b"")
                self.assertEqual(r.status, 400, q)
        finally:
            c.close()
        self.assertServes()

    def test_hostile_slowloris(self):
        c = EasConn(self.port)
        try:
            c.send(b"POST %s HTTP/1.1\r\n" % PATH.encode())
            t = time.time()
            closed = False
            for i in range(30):
                try:
                    c.send(b"X-%d: a\r\n" % i)
                except OSError:
                    closed = True
                    break
                if c.closed(timeout=1.0):
                    closed = True
                    break
            self.assertTrue(closed)
            self.assertLess(time.time() - t, 15)   # login = 8 s
        finally:
            c.close()
        self.assertServes()

    def test_hostile_16x_version_refused(self):
        r = self.eas("FolderSync", enc(request_xml("foldersync.xml")), version="16.1")
        self.assertEqual(r.status, 400)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Integration-test harness for postern: real Dovecot, real clients, loopback.

Reusable pieces (python3 stdlib only):

  free_port()              a port in 20000-32000 that binds now on 127.0.0.1
  Pki                      a test CA, a server certificate for mail.example.test
                           (also 127.0.0.1/localhost) and one for
                           other.example.test (SNI), made with `openssl`
  Dovecot                  a private Dovecot: own config, base_dir, state_dir,
                           log, maildirs, demo users; start/stop/deliver
  Postern                  postern with a generated config; start/stop/reload,
                           log capture, posternctl wrapper
  client helpers           imap_starttls/imap_tls/pop3_stls/pop3_tls, RawClient
  GatewayTestCase          a unittest base that prints the tail of postern's
                           and Dovecot's logs when a test fails
  main()                   unittest main whose exit code is the result

Environment (set by CTest; defaults for running a file by hand):
  POSTERN_SRC       repository root          (default: two levels up)
  POSTERN_BIN       postern binary           (default: $POSTERN_SRC/build/postern)
  POSTERNCTL_BIN    posternctl binary        (default: $POSTERN_SRC/build/posternctl)
  POSTERN_TEST_KEEP keep the run directory even when everything passed
  POSTERN_TEST_TMP  where run directories go (default: /tmp)

`python3 harness.py demo` runs the quick-start demo (see demo_main()).
"""

import base64
import imaplib
import json
import os
import poplib
import pwd
import random
import re
import shutil
import signal
import socket
import struct
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("POSTERN_SRC") or os.path.abspath(os.path.join(HERE, "..", ".."))
POSTERN_BIN = os.environ.get("POSTERN_BIN") or os.path.join(SRC, "build", "postern")
POSTERNCTL_BIN = os.environ.get("POSTERNCTL_BIN") or os.path.join(SRC, "build", "posternctl")

HOST = "127.0.0.1"
DOMAIN = "example.com"

# Demo users and their passwords (Dovecot passwd-file, PLAIN scheme).
# erin's password needs quoting or a literal in IMAP (space and quote).
USERS = {
    "alice@example.com": "alice-secret",
    "bob@example.com": "bob-secret",
    "carol@example.com": "carol-secret",
    "dave@example.com": "dave-secret",
    "erin@example.com": 'erin "two words"',
}

VMAIL_USER = "postern-vmail"

# imaplib does not know ID (RFC 2971); let tests send it.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))

# Generous deadlines: CI machines are noisy. Nothing asserts on speed.
START_TIMEOUT = 30.0
IO_TIMEOUT = 30.0


def log(msg):
    sys.stderr.write("[harness] %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# run directory, ports


_run_root = None
_run_root_lock = threading.Lock()


def run_root():
    """One private directory per test process, removed at exit on success."""
    global _run_root
    with _run_root_lock:
        if _run_root is None:
            base = os.environ.get("POSTERN_TEST_TMP", "/tmp")
            _run_root = tempfile.mkdtemp(prefix="postern-it-", dir=base)
            # Dovecot's unprivileged login processes must traverse it.
            os.chmod(_run_root, 0o755)
        return _run_root


_used_ports = set()
_port_lock = threading.Lock()


def free_port():
    """A TCP port in 20000-32000 that binds on 127.0.0.1 right now, never
    handed out twice in this process. Random, so parallel runs rarely meet;
    the bind test catches the rest."""
    with _port_lock:
        rnd = random.Random(os.getpid() ^ int(time.time() * 1000))
        for _ in range(2000):
            port = rnd.randint(20000, 32000)
            if port in _used_ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            finally:
                s.close()
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port in 20000-32000")


def port_accepts(port, host=HOST, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports, timeout=START_TIMEOUT, proc=None, what="server"):
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening" % (what, proc.returncode))
        pending = [p for p in pending if not port_accepts(p)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%s: ports %s not accepting after %.0fs" % (what, pending, timeout))
        time.sleep(0.05)


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; return it, or raise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def tail(path, lines=40, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as e:
        return "(%s: %s)" % (path, e)
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ---------------------------------------------------------------------------
# TLS test PKI


class Pki:
    """A CA and two server certificates made with the openssl command.

    server:  CN mail.example.test, SAN mail.example.test, localhost, 127.0.0.1
    other:   CN other.example.test, SAN other.example.test (for SNI tests)
    """

    def __init__(self, directory=None):
        self.dir = directory or os.path.join(run_root(), "pki")
        os.makedirs(self.dir, exist_ok=True)
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "mail.pem")
        self.key = os.path.join(self.dir, "mail.key")
        self.other_cert = os.path.join(self.dir, "other.pem")
        self.other_key = os.path.join(self.dir, "other.key")
        if not os.path.exists(self.other_cert):
            self._make()

    def _openssl(self, *args, stdin=None):
        r = subprocess.run(["openssl"] + list(args), cwd=self.dir, input=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace")))

    def _leaf(self, cert, key, cn, sans):
        csr = key + ".csr"
        ext = key + ".ext"
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn)
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join(sans))
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext, "-out", cert)
        os.chmod(key, 0o644)   # postern may drop privileges before reading it

    def _make(self):
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "30",
                      "-subj", "/CN=postern test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._leaf(self.cert, self.key, "mail.example.test",
                   ["DNS:mail.example.test", "DNS:localhost", "IP:127.0.0.1"])
        self._leaf(self.other_cert, self.other_key, "other.example.test",
                   ["DNS:other.example.test"])

    def client_context(self):
        """An SSL context that trusts only the test CA and checks names."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


_pki = None


def pki():
    global _pki
    if _pki is None:
        _pki = Pki()
    return _pki


# ---------------------------------------------------------------------------
# Dovecot


def vmail_ids():
    """uid/gid that own the test maildirs. As root: a dedicated system user
    (created when missing), since Dovecot refuses root and uids below
    first_valid_uid for mail. Otherwise: ourselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(VMAIL_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        "--comment", "postern test mail owner", VMAIL_USER],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pw = pwd.getpwnam(VMAIL_USER)
    return pw.pw_uid, pw.pw_gid


class Dovecot:
    """A private Dovecot (IMAP + POP3, plaintext, 127.0.0.1) for one test run.

    Its config, base_dir, state_dir, log and maildirs live under its own
    directory; it never touches the system's Dovecot. Demo users are those of
    USERS, authenticated from a passwd-file with PLAIN passwords. Login events
    (with rip=) go to self.log_path; login_trusted_networks includes
    127.0.0.0/8 so Dovecot honours postern's ID x-originating-ip and XCLIENT.
    """

    def __init__(self, name="dovecot", imap_port=None, pop3_port=None, users=None,
                 directory=None):
        self.dir = directory or os.path.join(run_root(), name)
        self.imap_port = imap_port or free_port()
        self.pop3_port = pop3_port or free_port()
        self.users = dict(users or USERS)
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.base_dir = os.path.join(self.dir, "run")
        self.state_dir = os.path.join(self.dir, "state")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.passwd_path = os.path.join(self.dir, "passwd")
        self.proc = None
        self.uid, self.gid = vmail_ids()
        self._seq = 0
        self._write_config()

    def _write_config(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for d in (self.state_dir, self.mail_dir):
            os.makedirs(d, exist_ok=True)
        os.chown(self.mail_dir, self.uid, self.gid)
        with open(self.passwd_path, "w") as f:
            for user, pw in self.users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (user, pw))
        os.chmod(self.passwd_path, 0o644)
        me = pwd.getpwuid(os.geteuid()).pw_name
        root = os.geteuid() == 0
        login_user = "dovenull" if root else me
        internal_user = "dovecot" if root else me
        conf = """\
# private Dovecot for postern's integration tests (generated)
protocols = imap pop3
listen = {host}
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = postern-test-{imap_port}
log_path = {log_path}
info_log_path = {log_path}
debug_log_path = {log_path}
auth_verbose = yes
auth_failure_delay = 0
verbose_proctitle = no
ssl = no
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.0/8
mail_max_userip_connections = 1000
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{mail_dir}/%d/%n/Maildir
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_dir}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
# No auth penalty in Dovecot: postern applies its own per client IP, and
# the tests measure that one.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap {{
  process_limit = 1024
}}
service pop3 {{
  process_limit = 1024
}}
""".format(host=HOST, base_dir=self.base_dir, state_dir=self.state_dir,
           log_path=self.log_path, login_user=login_user, internal_user=internal_user,
           uid=self.uid, gid=self.gid, mail_dir=self.mail_dir, passwd=self.passwd_path,
           imap_port=self.imap_port, pop3_port=self.pop3_port)
        if not root:
            conf += "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n" \
                    "service pop3-login {\n  chroot =\n}\n"
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        self._log_fh = open(os.path.join(self.dir, "dovecot.stderr"), "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf_path],
                                     stdout=self._log_fh, stderr=self._log_fh,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_ports([self.imap_port, self.pop3_port], proc=self.proc, what="dovecot")
        except RuntimeError:
            log("dovecot failed to start; stderr:\n%s\nlog:\n%s" % (
                tail(os.path.join(self.dir, "dovecot.stderr")), tail(self.log_path)))
            raise
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log_fh.close()
        # Dovecot's children exit when the master goes; wait until the
        # ports are free so a restart on the same ports works.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (port_accepts(self.imap_port) or
                                              port_accepts(self.pop3_port)):
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def maildir(self, user):
        local, domain = user.split("@", 1)
        return os.path.join(self.mail_dir, domain, local, "Maildir")

    def deliver(self, user, message):
        """Put a message (bytes, CRLF or LF line ends) into user's INBOX by
        writing a maildir file directly; Dovecot picks it up on next access.
        Returns the file name."""
        if isinstance(message, str):
            message = message.encode()
        md = self.maildir(user)
        for sub in ("cur", "new", "tmp"):
            p = os.path.join(md, sub)
            if not os.path.isdir(p):
                os.makedirs(p, exist_ok=True)
                os.chown(p, self.uid, self.gid)
        # Every directory from mail_dir down belongs to the mail user.
        p = md
        while True:
            os.chown(p, self.uid, self.gid)
            if os.path.samefile(os.path.dirname(p), self.mail_dir):
                break
            p = os.path.dirname(p)
        # Dovecot serves maildir bodies with LF line ends as CRLF; store LF.
        data = message.replace(b"\r\n", b"\n")
        self._seq += 1
        name = "%d.M%dP%dQ%d.postern-test,S=%d" % (int(time.time()), self._seq, os.getpid(),
                                                   self._seq, len(data))
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, os.path.join(md, "new", name))
        return name

    def log_text(self, offset=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        return file_size(self.log_path)

    def wait_log(self, pattern, timeout=15.0, offset=0):
        """Wait until Dovecot's log (from offset) matches regex pattern;
        returns the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log_text(offset)), timeout,
                        what="dovecot log /%s/" % pattern)


    def logins(self, user=None, protocol=None, offset=0):
        """[(protocol, user, rip)] for each successful login Dovecot logged."""
        out = []
        for m in re.finditer(r"(imap|pop3)-login: Info: Login: user=<([^>]*)>.*?rip=([0-9a-fA-F.:]+)",
                             self.log_text(offset)):
            if (protocol is None or m.group(1) == protocol) and (user is None or
                                                                  m.group(2) == user):
                out.append((m.group(1), m.group(2), m.group(3)))
        return out

    def wait_login(self, user, protocol, offset=0, timeout=15.0):
        """Waits for Dovecot to log a login of user over protocol (imap or
        pop3) since offset; returns the rip= of the last one."""
        found = wait_for(lambda: self.logins(user, protocol, offset), timeout,
                         what="dovecot %s login of %s" % (protocol, user))
        return found[-1][2]


class AcceptLoop:
    """A listening socket (TCP on a port of its own, or UNIX at `path`) with
    a thread that accepts until stop() and hands each connection to
    self.accepted_conn(conn). Counts accepted connections in
    self.accepted."""

    def __init__(self, host=HOST, path=None):
        self.accepted = 0
        self._stop = threading.Event()
        if path is not None:
            self.path = path
            self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._srv.bind(path)
        else:
            self.port = free_port()
            self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._srv.bind((host, self.port))
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.accepted_conn(conn)

    def accepted_conn(self, conn):
        conn.close()

    def stop(self):
        self._stop.set()
        self._srv.close()
        self._thread.join(5)


class FakeBackend(AcceptLoop):
    """A scriptable stand-in for a mailbox server, on its own port.

    mode "close":  accept, then close at once
         "silent": accept and never send a byte (until stop())
         "banner": send `banner`, then read and ignore everything
    Counts accepted connections in self.accepted.
    """

    def __init__(self, mode="close", banner=b""):
        self.mode = mode
        self.banner = banner
        self._conns = []
        super().__init__()

    def accepted_conn(self, conn):
        if self.mode == "close":
            conn.close()
            return
        if self.mode == "banner" and self.banner:
            try:
                conn.sendall(self.banner)
            except OSError:
                pass
        self._conns.append(conn)
        if self.mode == "banner":
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def stop(self):
        super().stop()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


def make_message(subject="test", body="Hello from the postern test suite.\r\n",
                 sender="sender@example.net", to="alice@example.com"):
    """A small RFC 5322 message with CRLF line ends."""
    hdr = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
           "Message-ID: <%s@postern.test>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n" %
           (sender, to, subject, "%x.%x" % (random.getrandbits(48), os.getpid())))
    return (hdr + body).encode()


def make_big_message(size, subject="big message", to="alice@example.com"):
    """A message of about `size` bytes: base64-looking lines of random data,
    CRLF line ends, deterministic for a given size."""
    rnd = random.Random(size)
    head = make_message(subject=subject, body="", to=to)
    lines = []
    total = len(head)
    while total < size:
        raw = rnd.randbytes(57)
        line = base64.b64encode(raw) + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


# ---------------------------------------------------------------------------
# postern


def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    raise TypeError(v)


def _cfg_group(d):
    return "{ " + " ".join("%s = %s;" % (k, _cfg_value(v)) for k, v in d.items()) + " }"


class Listener(dict):
    """A listener entry: protocol, port, tls, proxy_protocol, plaintext_auth,
    backend. The port is chosen when not given."""

    def __init__(self, protocol, tls="starttls", port=None, proxy_protocol=False,
                 plaintext_auth=False, backend="dovecot", address=HOST):
        super().__init__(protocol=protocol, address=address, port=port or free_port(), tls=tls,
                         proxy_protocol=proxy_protocol, plaintext_auth=plaintext_auth,
                         backend=backend)

    @property
    def port(self):
        return self["port"]


class Postern:
    """One postern process with a generated config.

    listeners: list of Listener; backends: list of dicts
    {"name": ..., "servers": [(host, imap_port, pop3_port), ...]}.
    Defaults: one pool "dovecot" with the given Dovecot, IMAP STARTTLS and
    implicit, POP3 STLS and implicit. Settings chosen for tests: small
    penalty delay, few workers.
    """

    def __init__(self, dovecot=None, listeners=None, backends=None, name="postern",
                 workers=2, timeouts=None, limits=None, auth_penalty=None, admin=True,
                 extra="", certificates=None, store=None, poll_ms=200, asan_extra=""):
        self.dir = os.path.join(run_root(), name)
        while os.path.exists(self.dir):
            self.dir += "_"
        os.makedirs(self.dir)
        self.store = store or os.path.join(self.dir, "policy")
        os.makedirs(self.store, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "postern.conf")
        self.log_path = os.path.join(self.dir, "postern.log")
        self.dovecot = dovecot
        self.pki = pki()
        if listeners is None:
            listeners = [Listener("imap", "starttls"), Listener("imap", "implicit"),
                         Listener("pop3", "starttls"), Listener("pop3", "implicit")]
        self.listeners = listeners
        if backends is None:
            backends = [{"name": "dovecot",
                         "servers": [(HOST, dovecot.imap_port, dovecot.pop3_port)]}]
        self.backends = backends
        self.workers = workers
        self.timeouts = {"preauth": 60, "login": 180, "idle": 1860, "backend_ms": 10000,
                         "drain": 10}
        self.timeouts.update(timeouts or {})
        self.limits = {"line": 8192, "literal": 8192, "bad_commands": 10, "auth_failures": 3,
                       "relay_buffer": 262144, "max_sessions": 10000}
        self.limits.update(limits or {})
        self.auth_penalty = {"initial_ms": 100, "max_ms": 400, "forget_s": 300}
        self.auth_penalty.update(auth_penalty or {})
        self.admin_port = free_port() if admin else None
        self.extra = extra
        self.certificates = certificates or [
            {"cert": self.pki.cert, "key": self.pki.key},
            {"cert": self.pki.other_cert, "key": self.pki.other_key,
             "names": ["other.example.test"]},
        ]
        self.poll_ms = poll_ms
        # appended to ASAN_OPTIONS for this postern (an ASan build)
        self.asan_extra = asan_extra
        self.proc = None
        self._log_fh = None
        self.write_config()
        self.init_store()

    # -- config

    def listener(self, protocol, tls="starttls", proxy_protocol=False):
        for l in self.listeners:
            if l["protocol"] == protocol and l["tls"] == tls and \
                    bool(l["proxy_protocol"]) == proxy_protocol:
                return l
        raise KeyError((protocol, tls, proxy_protocol))

    def port(self, protocol, tls="starttls", proxy_protocol=False):
        return self.listener(protocol, tls, proxy_protocol).port

    def config_text(self):
        out = []
        out.append("# generated by tests/integration/harness.py")
        out.append("workers = %d;" % self.workers)
        out.append('hostname = "postern-test";')
        out.append('default_domain = "%s";' % DOMAIN)
        out.append('log: { level = "debug"; };')
        out.append("policy: { path = %s; map_size_mb = 64; poll_ms = %d; };" %
                   (_cfg_value(self.store), self.poll_ms))
        certs = []
        for c in self.certificates:
            s = "{ cert = %s; key = %s;" % (_cfg_value(c["cert"]), _cfg_value(c["key"]))
            if c.get("names"):
                s += " names = [ %s ];" % ", ".join(_cfg_value(n) for n in c["names"])
            certs.append(s + " }")
        out.append("tls: {\n  certificates = (\n    %s\n  );\n  min_version = \"TLSv1.2\";\n};" %
                   ",\n    ".join(certs))
        pools = []
        for b in self.backends:
            # a server is (host, imap_port, pop3_port[, {extra settings}])
            servers = ",\n        ".join(
                "{ host = %s; imap_port = %d; pop3_port = %d; %s }" %
                (_cfg_value(srv[0]), srv[1], srv[2],
                 " ".join("%s = %s;" % (k, _cfg_value(v))
                          for k, v in dict({"tls": False}, **(srv[3] if len(srv) > 3 else {}))
                          .items()))
                for srv in b["servers"])
            pools.append("  {\n    name = %s;\n    connect_timeout_ms = %d;\n"
                         "    servers = (\n        %s\n    );\n  }" %
                         (_cfg_value(b["name"]), b.get("connect_timeout_ms", 3000), servers))
        out.append("backends = (\n%s\n);" % ",\n".join(pools))
        out.append("listeners = (\n  %s\n);" % ",\n  ".join(_cfg_group(l) for l in self.listeners))
        out.append("timeouts: %s;" % _cfg_group(self.timeouts))
        out.append("limits: %s;" % _cfg_group(self.limits))
        out.append("auth_penalty: %s;" % _cfg_group(self.auth_penalty))
        if self.admin_port:
            out.append('admin: { address = "%s"; port = %d; };' % (HOST, self.admin_port))
        out.append('messages: { disabled = "%s access is disabled for this account. '
                   'Contact your administrator."; };')
        if self.extra:
            out.append(self.extra)
        return "\n".join(out) + "\n"

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())

    # -- process

    def start(self, wait=True):
        if not os.path.exists(POSTERN_BIN):
            raise RuntimeError("postern binary not found: %s (build first)" % POSTERN_BIN)
        self._log_fh = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        if self.asan_extra:
            env["ASAN_OPTIONS"] += ":" + self.asan_extra
        self.proc = subprocess.Popen([POSTERN_BIN, "-c", self.conf_path],
                                     stdout=self._log_fh, stderr=self._log_fh,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait:
            try:
                ports = [l.port for l in self.listeners]
                if self.admin_port:
                    ports.append(self.admin_port)
                wait_ports(ports, proc=self.proc, what="postern")
            except RuntimeError:
                log("postern failed to start; log:\n%s" % tail(self.log_path))
                raise
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    SANITIZER_RX = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                              r"runtime error: |SUMMARY: UndefinedBehaviorSanitizer")

    def exit_problem(self, rc):
        """After stop(): a message if postern did not exit cleanly on SIGTERM
        or a sanitizer reported something in its log; else None."""
        text = self.log_text()
        m = self.SANITIZER_RX.search(text)
        if m:
            start = max(0, text.rfind("\n", 0, max(0, m.start() - 200)))
            return "sanitizer report in postern's log (%s):\n%s" % (
                self.log_path, text[start:start + 6000])
        if rc not in (0, None):
            return "postern exited with status %s after SIGTERM; log tail:\n%s" % (
                rc, tail(self.log_path, 30))
        return None

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("postern did not exit %ds after SIGTERM; killing" % timeout)
                self.proc.kill()
                rc = self.proc.wait()
        self.proc = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        return rc

    def log_text(self, offset=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        return file_size(self.log_path)

    def wait_log(self, pattern, timeout=15.0, offset=0):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log_text(offset)), timeout,
                        what="postern log /%s/" % pattern)

    # -- check mode

    @staticmethod
    def check_config(path):
        """Runs `postern -t -c path`; returns (exit code, stdout+stderr)."""
        r = subprocess.run([POSTERN_BIN, "-t", "-c", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    # -- policy

    def ctl(self, *args, check=True):
        """Runs posternctl -d STORE ARGS...; returns CompletedProcess (text)."""
        r = subprocess.run([POSTERNCTL_BIN, "-d", self.store] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=60)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        if check and r.returncode != 0:
            raise AssertionError("posternctl %s failed (%d): %s%s" %
                                 (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def init_store(self):
        """Creates an empty policy store (an empty import), so postern finds
        one at start. Every user is then allowed everything (built-in
        defaults) until a test says otherwise."""
        if not os.path.exists(POSTERNCTL_BIN):
            return
        if self.ctl("generation", check=False).returncode == 0:
            return
        empty = os.path.join(self.dir, "empty-policy.json")
        with open(empty, "w") as f:
            json.dump({"version": 1}, f)
        self.ctl("import", empty)

    def set_user(self, user, **flags):
        """posternctl user set USER k=v ...; e.g. set_user(u, imap="off",
        message="...")."""
        args = ["%s=%s" % (k, v) for k, v in flags.items()]
        return self.ctl("user", "set", user, *args)

    def delete_user(self, user):
        return self.ctl("user", "delete", user, check=False)

    # -- admin

    def http_get(self, path, timeout=10):
        """GET on the admin listener; returns (status, body text)."""
        url = "http://%s:%d%s" % (HOST, self.admin_port, path)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metrics(self):
        """/metrics parsed into {'name{labels}': float}."""
        status, body = self.http_get("/metrics")
        if status != 200:
            raise AssertionError("/metrics answered %d" % status)
        return parse_metrics(body)


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def metric_sum(metrics, name, **labels):
    """Sum of every sample of `name` whose labels include `labels`."""
    total = 0.0
    for key, v in metrics.items():
        m = re.match(r"^([^{]+)(?:\{(.*)\})?$", key)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v2 for k, v2 in labels.items()):
            total += v
    return total


# ---------------------------------------------------------------------------
# clients


def imap_starttls(port, ctx=None, timeout=IO_TIMEOUT):
    """imaplib client on a STARTTLS listener, TLS already started."""
    c = imaplib.IMAP4(HOST, port, timeout=timeout)
    c.starttls(ssl_context=ctx or pki().client_context())
    return c


def imap_tls(port, ctx=None, timeout=IO_TIMEOUT):
    return imaplib.IMAP4_SSL(HOST, port, ssl_context=ctx or pki().client_context(),
                             timeout=timeout)


def pop3_stls(port, ctx=None, timeout=IO_TIMEOUT):
    c = poplib.POP3(HOST, port, timeout=timeout)
    c.stls(context=ctx or pki().client_context())
    return c


def pop3_tls(port, ctx=None, timeout=IO_TIMEOUT):
    return poplib.POP3_SSL(HOST, port, context=ctx or pki().client_context(), timeout=timeout)


class Closed(Exception):
    pass


class RawClient:
    """A line-oriented client on a raw socket, optionally TLS, for the
    exchanges imaplib/poplib cannot make (literals by hand, hostile input,
    PROXY headers)."""

    def __init__(self, port, tls=False, host=HOST, timeout=IO_TIMEOUT, prefix=None,
                 server_hostname=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if prefix:
            self.sock.sendall(prefix)
        self.buf = b""
        if tls:
            self.wrap_tls(server_hostname)

    def wrap_tls(self, server_hostname=None):
        ctx = pki().client_context()
        if server_hostname is None:
            ctx.check_hostname = False
            server_hostname = None
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            raise Closed(str(e))
        if not chunk:
            raise Closed("connection closed by peer")
        self.buf += chunk

    def readline(self, timeout=None):
        """One line including CRLF; raises Closed or socket.timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1fs (have %r)" % (timeout or self.timeout,
                                                                         self.buf[:200]))
            self._fill(left)
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_until_tagged(self, tag, timeout=None):
        """Lines up to and including the tagged reply for tag; returns list."""
        if isinstance(tag, str):
            tag = tag.encode()
        lines = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self.readline(max(0.1, deadline - time.monotonic()))
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, tag, command, timeout=None):
        """Send 'tag command\\r\\n', return (tagged line, all lines)."""
        self.send(b"%s %s\r\n" % (tag.encode(), command.encode() if isinstance(command, str)
                                  else command))
        lines = self.read_until_tagged(tag, timeout)
        return lines[-1], lines

    def expect_closed(self, timeout=None):
        """Read until the peer closes; returns everything read. Raises
        socket.timeout when it does not close in time."""
        deadline = time.monotonic() + (timeout or self.timeout)
        data = self.buf
        self.buf = b""
        self.sock.settimeout(None)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("connection still open after %.1fs" % (timeout or
                                                                            self.timeout))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise socket.timeout("connection still open after %.1fs" % (timeout or
                                                                            self.timeout))
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                return data
            if not chunk:
                return data
            data += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sasl_plain(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def proxy_v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src, dst, sport, dport, command=0x1, length=None, tlvs=b""):
    """A PROXY v2 header for TCP over IPv4 or IPv6. length overrides the
    length field (to lie about it)."""
    import struct
    if ":" in src:
        fam = 0x21
        addr = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam = 0x11
        addr = socket.inet_aton(src) + socket.inet_aton(dst)
    body = addr + struct.pack("!HH", sport, dport) + tlvs
    ln = len(body) if length is None else length
    return PROXY_V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", ln) + body


# ---------------------------------------------------------------------------
# unittest glue


class GatewayTestCase(unittest.TestCase):
    """Base class: subclasses set up cls.dovecot / cls.postern (e.g. with
    start_default()). On a failing test, the tail of each process's log
    written during that test is printed."""

    dovecot = None
    postern = None
    extra_logs = ()

    @classmethod
    def start_default(cls, **postern_kw):
        cls.dovecot = Dovecot().start()
        try:
            cls.postern = Postern(cls.dovecot, **postern_kw).start()
        except Exception:
            cls.dovecot.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        problem = None
        if cls.postern is not None:
            rc = cls.postern.stop()
            problem = cls.postern.exit_problem(rc)
        if cls.dovecot is not None:
            cls.dovecot.stop()
        if problem:
            raise AssertionError(problem)

    def _logs(self):
        out = []
        for obj in (self.postern, self.dovecot) + tuple(self.extra_logs):
            if obj is not None and getattr(obj, "log_path", None):
                out.append(obj)
        return out

    def setUp(self):
        self._log_offsets = {id(o): o.log_size() for o in self._logs()}

    def dump_logs(self, lines=60):
        """Prints what postern and Dovecot logged since this test began."""
        offsets = getattr(self, "_log_offsets", {})
        for o in self._logs():
            sys.stderr.write("\n----- %s (%s), during %s -----\n%s\n" % (
                type(o).__name__, o.log_path, self.id(),
                tail(o.log_path, lines, offsets.get(id(o), 0))))
        sys.stderr.flush()

    def _failed_so_far(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        return any(t is self for t, _ in list(result.errors) + list(result.failures))

    def tearDown(self):
        if self._failed_so_far():
            self.dump_logs()

    # helpers for subclasses

    def assertStillServes(self, port=None, user="alice@example.com"):
        """After hostile input: a fresh client still gets a greeting, NOOP,
        and a working login."""
        port = port or self.postern.port("imap", "implicit")
        c = imap_tls(port)
        try:
            typ, _ = c.noop()
            self.assertEqual(typ, "OK")
            typ, _ = c.login(user, USERS[user])
            self.assertEqual(typ, "OK")
            typ, _ = c.select("INBOX")
            self.assertEqual(typ, "OK")
            c.logout()
        finally:
            try:
                c.shutdown()
            except Exception:
                pass

    def store_search(self, user, folder, criteria, part):
        """BODY.PEEK[part] of each message in user's folder that matches
        the IMAP SEARCH criteria (a list of atoms), read straight from
        Dovecot (a folder that does not exist holds nothing)."""
        c = imaplib.IMAP4(HOST, self.dovecot.imap_port, timeout=30)
        c.login(user, USERS[user])
        try:
            typ, _ = c.select('"%s"' % folder, readonly=True)
            if typ != "OK":
                return []
            typ, data = c.search(None, *criteria)
            self.assertEqual(typ, "OK")
            out = []
            for num in data[0].split():
                typ, d = c.fetch(num, "(BODY.PEEK[%s])" % part)
                self.assertEqual(typ, "OK")
                out.append(d[0][1])
            return out
        finally:
            try:
                c.logout()
            except Exception:
                pass


def main():
    """unittest.main with verbose output; exit status 0 only when every test
    passed. Keeps the run directory on failure (its path is printed)."""
    prog = unittest.main(module="__main__", verbosity=2, exit=False, buffer=False,
                         warnings="ignore")
    ok = prog.result.wasSuccessful()
    root = _run_root
    if root:
        if ok and not os.environ.get("POSTERN_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            log("run directory kept: %s" % root)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(getattr(r, "unexpectedSuccesses", []))
    passed = max(0, r.testsRun - failed - len(r.skipped))
    print("%d passed, %d failed, %d skipped" % (passed, failed, len(r.skipped)))
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------------------
# the quick-start demo


DEMO_PORTS = {"imap": 10143, "imaps": 10993, "pop3": 10110, "pop3s": 10995, "admin": 18025,
              "lmtp": 10024}

# The demo's incoming rules (posternctl rule create ...).
DEMO_RULES = [
    ["--name", "Offers to Junk", "--delimiter", ";",
     "--if", "subject contains offer;special deal", "--action", "spam",
     "--action", "subject=[offer]"],
    ["--name", "No executables", "--if", "attachment_type is exe,scr,js",
     "--action", "reject=Executable attachments are not accepted here"],
    ["--name", "External banner", "--if", "external_sender is true",
     "--if", "sender_domain is_not example.com",
     "--action", "banner=This message comes from outside example.com."],
]


def demo_main(argv):
    """Runs a private Dovecot with the demo users and a demo message, the demo
    policy, and postern in front of it on fixed ports; prints how to connect;
    Ctrl-C (or SIGTERM) stops everything."""
    import argparse
    ap = argparse.ArgumentParser(prog="harness.py demo")
    ap.add_argument("--dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                  "postern-demo"),
                    help="where the demo keeps its files (default: /tmp/postern-demo); "
                         "removed and made anew at each start")
    ap.add_argument("--dovecot-imap-port", type=int, default=11143)
    ap.add_argument("--dovecot-pop3-port", type=int, default=11110)
    ap.add_argument("--dovecot-lmtp-port", type=int, default=11024)
    args = ap.parse_args(argv)

    global _run_root
    marker = os.path.join(args.dir, ".postern-demo")
    if os.path.isdir(args.dir) and os.listdir(args.dir):
        if not os.path.exists(marker):
            sys.exit("demo: %s exists and is not a previous demo's directory; "
                     "choose another --dir" % args.dir)
        shutil.rmtree(args.dir)
    os.makedirs(args.dir, exist_ok=True)
    open(marker, "w").close()
    os.chmod(args.dir, 0o755)
    parent = os.path.dirname(args.dir)
    while parent and parent != "/":
        st = os.stat(parent)
        if not st.st_mode & 0o001:
            log("warning: %s is not world-searchable; Dovecot's login processes may "
                "fail to reach %s" % (parent, args.dir))
            break
        parent = os.path.dirname(parent)
    _run_root = args.dir

    for name, port in list(DEMO_PORTS.items()) + [("dovecot-imap", args.dovecot_imap_port),
                                                  ("dovecot-pop3", args.dovecot_pop3_port),
                                                  ("dovecot-lmtp", args.dovecot_lmtp_port)]:
        if port_accepts(port):
            sys.exit("demo: port %d (%s) is already in use; is another demo running?" %
                     (port, name))

    dv = DeliveryDovecot(name="dovecot", imap_port=args.dovecot_imap_port,
                         pop3_port=args.dovecot_pop3_port, lmtp_port=args.dovecot_lmtp_port,
                         sieve_before=os.path.join(SRC, "conf", "dovecot", "postern-junk.sieve"))
    for user in USERS:
        dv.deliver(user, make_message(
            subject="Welcome to postern, %s" % user.split("@")[0], to=user,
            body="This message sits in a private demo Dovecot and was read through "
                 "postern.\r\n"))
    listeners = [Listener("imap", "starttls", port=DEMO_PORTS["imap"], backend="store"),
                 Listener("imap", "implicit", port=DEMO_PORTS["imaps"], backend="store"),
                 Listener("pop3", "starttls", port=DEMO_PORTS["pop3"], backend="store"),
                 Listener("pop3", "implicit", port=DEMO_PORTS["pop3s"], backend="store"),
                 LmtpListener(port=DEMO_PORTS["lmtp"])]
    quarantine = os.path.join(args.dir, "quarantine")
    pg = DeliveryPostern(dv, listeners=listeners, name="postern", workers=0,
                         auth_penalty={"initial_ms": 2000, "max_ms": 15000},
                         timeouts={"drain": 5},
                         rules={"quarantine_directory": quarantine,
                                "authserv_id": "mx.example.com"})
    pg.admin_port = DEMO_PORTS["admin"]
    pg.write_config()

    demo_json = os.path.join(SRC, "conf", "demo-users.json")
    refused = []
    if os.path.exists(demo_json):
        pg.ctl("import", demo_json)
        policy_from = demo_json
    else:
        pg.set_user("bob@example.com", imap="off",
                    message="IMAP is switched off for bob in the postern demo.")
        pg.set_user("carol@example.com", pop="off",
                    message="POP3 is switched off for carol in the postern demo.")
        pg.set_user("dave@example.com", imap="off", pop="off",
                    message="dave may not read mail in the postern demo.")
        policy_from = "posternctl commands (conf/demo-users.json not found)"
    for rule in DEMO_RULES:
        pg.ctl("rule", "create", *rule)
    for user in USERS:
        for svc in ("imap", "pop"):
            r = pg.ctl("explain", user, svc, check=False)
            fields = dict(l.split(": ", 1) for l in r.stdout.splitlines() if ": " in l)
            if fields.get("verdict", "allow") != "allow":
                refused.append("  %-18s %-4s %s%s" % (
                    user, svc, fields.get("reason", fields.get("verdict")),
                    ' "%s"' % fields["message"] if fields.get("message") else ""))

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    dv.start()
    try:
        pg.proc = None
        pg._log_fh = None
        env = dict(os.environ)
        # postern logs to our stderr, in the foreground.
        pg.proc = subprocess.Popen([POSTERN_BIN, "-c", pg.conf_path], stdin=subprocess.DEVNULL,
                                   env=env)
        wait_ports([l.port for l in listeners] + [pg.admin_port], proc=pg.proc, what="postern")
        rules_list = pg.ctl("rule", "list").stdout.rstrip()
        pw = USERS["alice@example.com"]
        print("""
postern demo is running (Ctrl-C stops it).

  Dovecot (private):  IMAP %(dimap)d, POP3 %(dpop)d, LMTP %(dlmtp)d on 127.0.0.1,
                      files in %(dir)s
  postern:            IMAP  127.0.0.1:10143 (STARTTLS)   IMAPS 127.0.0.1:10993 (TLS)
                      POP3  127.0.0.1:10110 (STLS)       POP3S 127.0.0.1:10995 (TLS)
                      LMTP  127.0.0.1:10024 (delivery, with the incoming rules)
                      admin http://127.0.0.1:18025/healthz  /metrics
  config:             %(conf)s
  policy store:       %(store)s  (from %(policy)s)
  test CA:            %(ca)s   (self-signed; use curl -k or --cacert)

Demo users (password in quotes):
%(users)s

Try:
  curl -k 'imaps://127.0.0.1:10993/INBOX;UID=1' -u alice@example.com:%(pw)s
  curl -k --ssl-reqd 'imap://127.0.0.1:10143/' -u alice@example.com:%(pw)s
  curl -k 'pop3s://127.0.0.1:10995/1' -u alice@example.com:%(pw)s
  openssl s_client -quiet -starttls imap -connect 127.0.0.1:10143 -CAfile %(ca)s
  %(ctl)s -d %(store)s user set alice@example.com imap=off message="Off for the demo"
  %(ctl)s -d %(store)s explain alice@example.com imap

Deliver through the incoming rules, then read where the messages landed:
  swaks --server 127.0.0.1:10024 --protocol LMTP --from x@partner.example \\
        --to alice@example.com --header 'Subject: a special offer'
  curl -k 'imaps://127.0.0.1:10993/Junk;UID=1' -u alice@example.com:%(pw)s
  swaks --server 127.0.0.1:10024 --protocol LMTP --to alice@example.com --attach-name a.exe \\
        --attach-type application/octet-stream --attach @/bin/true \\
        --add-header 'Authentication-Results: mx.example.com; dmarc=pass'     (550 5.7.1)
    (without that header the sender is not authenticated, and the backscatter
     guard turns the reject into a logged silent drop)
  %(ctl)s -d %(store)s rule test --eml FILE --from x@partner.example --rcpt alice@example.com

Incoming rules (%(ctl)s -d %(store)s rule list):
%(rules)s

Refused by the demo policy:
%(refused)s
""" % {"dimap": dv.imap_port, "dpop": dv.pop3_port, "dlmtp": dv.lmtp_port, "dir": dv.dir,
       "rules": "\n".join("  " + l for l in rules_list.splitlines()), "conf": pg.conf_path,
            "store": pg.store, "policy": policy_from, "ca": pg.pki.ca_cert, "pw": pw,
            "users": "\n".join("  %-18s '%s'" % (u, p) for u, p in USERS.items()),
            "ctl": POSTERNCTL_BIN, "refused": "\n".join(refused) or "  (none)"})
        sys.stdout.flush()
        while not stop.is_set() and pg.proc.poll() is None:
            stop.wait(0.5)
    finally:
        if pg.proc is not None and pg.proc.poll() is None:
            pg.proc.send_signal(signal.SIGTERM)
            try:
                pg.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pg.proc.kill()
        dv.stop()
        print("demo stopped")


def selftest_main(argv):
    """Starts a private Dovecot and checks it directly (no postern): IMAP
    and POP3 logins, delivery, and that ID/XCLIENT from 127.0.0.1 make it
    log the forwarded address."""
    dv = Dovecot().start()
    try:
        dv.deliver("alice@example.com", make_message(subject="selftest"))
        c = imaplib.IMAP4(HOST, dv.imap_port, timeout=IO_TIMEOUT)
        c._simple_command("ID", '("name" "selftest" "x-originating-ip" "192.0.2.7" '
                                '"x-originating-port" "40000")')
        c.login("alice@example.com", USERS["alice@example.com"])
        typ, data = c.select("INBOX")
        assert typ == "OK", (typ, data)
        typ, data = c.fetch("1", "(RFC822)")
        assert b"selftest" in data[0][1], data
        c.logout()
        rip = dv.wait_login("alice@example.com", "imap")
        assert rip == "192.0.2.7", rip
        p = poplib.POP3(HOST, dv.pop3_port, timeout=IO_TIMEOUT)
        resp = p._shortcmd("XCLIENT ADDR=198.51.100.9 PORT=40001")
        assert resp.startswith(b"+OK"), resp
        p.user("erin@example.com")
        p.pass_(USERS["erin@example.com"])
        p.quit()
        rip = dv.wait_login("erin@example.com", "pop3")
        assert rip == "198.51.100.9", rip
        print("dovecot selftest ok (%s)" % dv.dir)
    finally:
        dv.stop()
    shutil.rmtree(run_root(), ignore_errors=True)


# ---------------------------------------------------------------------------
# delivery (LMTP): a Dovecot with LMTP, postern with LMTP listeners and a
# spool, LMTP clients, a fault-injecting TCP proxy and a private Postfix.
# Used by tests/integration/test_delivery.py.

import smtplib  # noqa: E402  (appended section)


class DeliveryDovecot(Dovecot):
    """A private Dovecot that also speaks LMTP on 127.0.0.1:lmtp_port
    (Debian dovecot-lmtpd) and delivers into the same maildirs. Unknown
    users get "550 5.1.1" at RCPT (static userdb checked against the
    passwd-file)."""

    def __init__(self, name="dovecot-lmtp", lmtp_port=None, sieve_before=None, **kw):
        """sieve_before: a Sieve script (e.g. conf/dovecot/postern-junk.sieve)
        run by LMTP for every recipient before any personal script, with
        the sieve plugin on (conf/dovecot/README.md); None: no Sieve."""
        self.lmtp_port = lmtp_port or free_port()
        self.sieve_before = sieve_before
        super().__init__(name=name, **kw)

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path, "a") as f:
            f.write("""\
# LMTP for the delivery tests
protocols = $protocols lmtp
postmaster_address = postmaster@{domain}
recipient_delimiter = +
lmtp_rcpt_check_quota = no
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {port}
  }}
  process_limit = 64
}}
""".format(domain=DOMAIN, host=HOST, port=self.lmtp_port))
        if self.sieve_before:
            # A copy the mail user owns, so LMTP can save the compiled binary.
            sdir = os.path.join(self.dir, "sieve")
            os.makedirs(sdir, exist_ok=True)
            script = os.path.join(sdir, os.path.basename(self.sieve_before))
            shutil.copyfile(self.sieve_before, script)
            for p in (sdir, script):
                os.chown(p, self.uid, self.gid)
            with open(self.conf_path, "a") as f:
                f.write("""\
# Sieve before delivery (conf/dovecot/README.md)
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve_before = {script}
}}
""".format(script=script))

    def start(self):
        super().start()
        wait_ports([self.lmtp_port], proc=self.proc, what="dovecot lmtp")
        return self

    def stop(self):
        super().stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and port_accepts(self.lmtp_port):
            time.sleep(0.05)

    def messages(self, user):
        """The raw files of user's INBOX (new/ and cur/), oldest first."""
        md = self.maildir(user)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                p = os.path.join(d, name)
                out.append((os.path.getmtime(p), name, p))
        out.sort()
        data = []
        for _, _, p in out:
            with open(p, "rb") as f:
                data.append(f.read())
        return data

    def count_with(self, user, needle):
        """How many of user's messages contain needle (bytes or str)."""
        if isinstance(needle, str):
            needle = needle.encode()
        return sum(1 for m in self.messages(user) if needle in m)

    def folder_messages(self, user, folder):
        """The raw files of one of user's folders ("INBOX", "Junk", ...;
        Maildir++ layout), oldest first."""
        if folder.upper() == "INBOX":
            return self.messages(user)
        md = os.path.join(self.maildir(user), "." + folder)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if os.path.isdir(d):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    out.append((os.path.getmtime(p), name, p))
        out.sort()
        data = []
        for _, _, p in out:
            with open(p, "rb") as f:
                data.append(f.read())
        return data


class LmtpListener(dict):
    """An LMTP listener entry: TCP (address/port) or a UNIX socket (path),
    trusted_networks (None: the key is left out), backend pool name."""

    def __init__(self, port=None, path=None, trusted=("127.0.0.0/8",), backend="store",
                 address=HOST, mode="0666"):
        super().__init__(protocol="lmtp", tls="none", backend=backend)
        if path:
            self["path"] = path
            self["mode"] = mode
        else:
            self["address"] = address
            self["port"] = port or free_port()
        if trusted is not None:
            self["trusted_networks"] = list(trusted)

    @property
    def port(self):
        return self.get("port")

    @property
    def path(self):
        return self.get("path")


def _cfg_any(v):
    if isinstance(v, (list, tuple)):
        return "[ %s ]" % ", ".join(_cfg_value(x) for x in v)
    return _cfg_value(v)


class DeliveryPostern(Postern):
    """postern with LMTP listeners (LmtpListener) next to ordinary ones
    (Listener), one backend pool "store" (IMAP, POP3 and LMTP of a
    DeliveryDovecot, or lmtp_port overridden, e.g. by a CutProxy), a spool
    group and the delivery group."""

    def __init__(self, dovecot, listeners, lmtp_port=None, spool_memory_max=1048576,
                 message_max=52428800, unknown_recipients="pass", name="postern-lmtp",
                 rules=None, copy_smtp_port=None, **kw):
        """rules: a dict rendered as the rules { } section (None: left out,
        postern's defaults); copy_smtp_port: adds a backend pool "reinject"
        whose one server takes SMTP on that port (rules.copy_backend).
        rules with copy_backend but no loop_secret get a test secret
        (postern requires one: copies come back)."""
        if rules is not None and rules.get("copy_backend") and not rules.get("loop_secret"):
            rules = dict(rules, loop_secret="harness-loop-secret-" + "0" * 32)
        self.rules = rules
        self.copy_smtp_port = copy_smtp_port
        self.lmtp_store_port = lmtp_port or dovecot.lmtp_port
        self.spool_memory_max = spool_memory_max
        self.message_max = message_max
        self.unknown_recipients = unknown_recipients
        self.spool_dir = os.path.join(run_root(), name + "-spool")
        while os.path.exists(self.spool_dir):
            self.spool_dir += "_"
        os.makedirs(self.spool_dir)
        backends = [{"name": "store",
                     "servers": [(HOST, dovecot.imap_port, dovecot.pop3_port)]}]
        super().__init__(dovecot, listeners=listeners, backends=backends, name=name, **kw)

    def config_text(self):
        # The base class renders scalars only: give it no listeners, then
        # put ours in (lists, paths).
        saved, self.listeners = self.listeners, []
        try:
            text = super().config_text()
        finally:
            self.listeners = saved
        start = text.index("listeners = (")
        end = text.index("\n);", start) + 3
        rendered = ",\n  ".join("{ " + " ".join("%s = %s;" % (k, _cfg_any(v))
                                                for k, v in l.items()) + " }"
                                for l in self.listeners)
        text = text[:start] + "listeners = (\n  %s\n);" % rendered + text[end:]
        # Every server of the pool also gets the LMTP port.
        text = re.sub(r"(pop3_port = \d+;)", r"\1 lmtp_port = %d;" % self.lmtp_store_port,
                      text)
        text += ("spool: { directory = %s; memory_max = %d; message_max = %d; };\n"
                 "delivery: { unknown_recipients = %s; };\n" %
                 (_cfg_value(self.spool_dir), self.spool_memory_max, self.message_max,
                  _cfg_value(self.unknown_recipients)))
        if self.copy_smtp_port:
            start = text.index("backends = (")
            end = text.index("\n);", start)
            pool = (",\n  {\n    name = \"reinject\";\n    connect_timeout_ms = 3000;\n"
                    "    servers = ( { host = %s; smtp_port = %d; tls = false; } );\n  }" %
                    (_cfg_value(HOST), self.copy_smtp_port))
            text = text[:end] + pool + text[end:]
        if self.rules is not None:
            text += "rules: { %s };\n" % " ".join(
                "%s = %s;" % (k, _cfg_any(v)) for k, v in self.rules.items())
        return text

    def start(self, wait=True):
        super().start(wait=False)
        if wait:
            try:
                ports = [l.port for l in self.listeners if l.port]
                if self.admin_port:
                    ports.append(self.admin_port)
                wait_ports(ports, proc=self.proc, what="postern")
                for l in self.listeners:
                    if l.get("path"):
                        wait_for(lambda: os.path.exists(l["path"]), START_TIMEOUT,
                                 what="socket %s" % l["path"])
            except (RuntimeError, AssertionError):
                log("postern failed to start; log:\n%s" % tail(self.log_path))
                raise
        return self

    def lmtp(self, trusted=True):
        """The first TCP LMTP listener whose trusted_networks do (not)
        include the test clients' address (127.0.0.1)."""
        import ipaddress
        me = ipaddress.ip_address(HOST)
        for l in self.listeners:
            if l.get("protocol") != "lmtp" or not l.port:
                continue
            nets = [ipaddress.ip_network(n, strict=False)
                    for n in l.get("trusted_networks") or []]
            if any(me in n for n in nets if n.version == me.version) == trusted:
                return l
        raise KeyError(("lmtp", trusted))


JUNK_SIEVE = os.path.join(SRC, "conf", "dovecot", "postern-junk.sieve")


class RulesGatewayTestCase(GatewayTestCase):
    """Base class of the incoming-rules tests: a DeliveryDovecot
    "dovecot-NAME" (sieve_before: the Junk sieve unless set otherwise) and a
    DeliveryPostern "postern-NAME" with an LMTP listener, an IMAP listener
    on the store pool and the rules { } section of rules_config(); every
    test begins with no rule. Subclasses set name and override
    rules_config(), and postern_kw() (more DeliveryPostern arguments) or
    postern_started() (run once postern is up) when they need them.
    cls.qdir is a quarantine directory under run_root() ("quarantine-NAME")
    that rules_config() may use."""

    name = "rules"
    sieve_before = JUNK_SIEVE

    @classmethod
    def rules_config(cls):
        return {"enabled": True, "quarantine_directory": cls.qdir}

    @classmethod
    def postern_kw(cls):
        return {}

    @classmethod
    def postern_started(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.qdir = os.path.join(run_root(), "quarantine-" + cls.name)
        cls.dovecot = DeliveryDovecot(name="dovecot-" + cls.name,
                                      sieve_before=cls.sieve_before).start()
        try:
            cls.postern = DeliveryPostern(
                cls.dovecot, [LmtpListener(), Listener("imap", "starttls", backend="store")],
                name="postern-" + cls.name, rules=cls.rules_config(),
                **cls.postern_kw()).start()
            cls.postern_started()
        except Exception:
            cls.dovecot.stop()
            raise

    def setUp(self):
        super().setUp()
        self.ctl("rule", "delete", "--all")

    @property
    def port(self):
        """The trusted LMTP listener's port."""
        return self.postern.lmtp(trusted=True).port

    def ctl(self, *args, check=True):
        """posternctl args; with check, a non-zero exit fails the test."""
        r = self.postern.ctl(*args, check=False)
        if check and r.returncode != 0:
            self.fail("posternctl %s: exit %d: %s%s" % (" ".join(args), r.returncode,
                                                        r.stdout, r.stderr))
        return r

    def rule(self, name, cond, action):
        """posternctl rule create --name name --if cond --action action."""
        self.ctl("rule", "create", "--name", name, "--if", cond, "--action", action)

    def quarantined(self, subject):
        """The quarantine entries (posternctl quarantine list --json) whose
        subject contains subject."""
        r = self.ctl("quarantine", "list", "--json", "--subject", subject)
        return json.loads(r.stdout)

    def subject_headers(self, user, folder, needle):
        """The headers of the messages in user's folder whose Subject
        contains needle."""
        return self.store_search(user, folder, ["HEADER", "Subject", '"%s"' % needle],
                                 "HEADER")

    def landed_in(self, user, needle):
        """(folder, header bytes) of the one copy of needle in user's INBOX
        or Junk, or (None, None)."""
        hits = [(f, h) for f in ("INBOX", "Junk") for h in self.subject_headers(user, f, needle)]
        self.assertLessEqual(len(hits), 1, hits)
        return hits[0] if hits else (None, None)


def lmtp_connect(target, timeout=IO_TIMEOUT, lhlo="mta.postern-test"):
    """smtplib.LMTP to a port on 127.0.0.1 or a UNIX socket path, after
    LHLO."""
    if isinstance(target, str) and target.startswith("/"):
        c = smtplib.LMTP(target, timeout=timeout)
    else:
        c = smtplib.LMTP(HOST, target, timeout=timeout)
    code, msg = c.ehlo(lhlo)
    if code != 250:
        raise AssertionError("LHLO answered %d %r" % (code, msg))
    return c


def lmtp_transaction(c, sender, rcpts, message, xforward=None):
    """One LMTP transaction on an open smtplib.LMTP. Returns
    {recipient: (code, text)}: the RCPT refusal, or the recipient's own
    reply after DATA. (smtplib reads one reply after DATA; LMTP sends one per
    accepted recipient, so the others are read here.)"""
    if xforward:
        code, msg = c.docmd("XFORWARD", xforward)
        if code != 250:
            raise AssertionError("XFORWARD answered %d %r" % (code, msg))
    opts = ["SIZE=%d" % len(message)] if c.has_extn("size") else []
    code, msg = c.mail(sender, opts)
    if code != 250:
        return {r: (code, msg) for r in rcpts}
    result, accepted = {}, []
    for r in rcpts:
        code, msg = c.rcpt(r)
        if code in (250, 251):
            accepted.append(r)
        else:
            result[r] = (code, msg)
    if not accepted:
        c.rset()
        return result
    try:
        code, msg = c.data(message)
    except smtplib.SMTPDataError as e:
        return dict(result, **{r: (e.smtp_code, e.smtp_error) for r in accepted})
    result[accepted[0]] = (code, msg)
    for r in accepted[1:]:
        result[r] = c.getreply()
    return result


def lmtp_deliver(target, sender, rcpts, message, xforward=None, timeout=IO_TIMEOUT):
    """Connect, one transaction, QUIT. Returns lmtp_transaction()'s dict."""
    c = lmtp_connect(target, timeout=timeout)
    try:
        return lmtp_transaction(c, sender, rcpts, message, xforward=xforward)
    finally:
        try:
            c.quit()
        except (smtplib.SMTPException, OSError):
            pass


class CutProxy(AcceptLoop):
    """A TCP proxy on its own port in front of target_port, for injecting a
    store failure: with cut_after = N, a connection is cut (both sides
    closed) once N bytes went from the client to the target; with
    hold_after = N, once N bytes went to the target nothing more is
    forwarded (nor read from the client) and the `held` event is set, so a
    test can stop the real store while it sits in the middle of DATA (the
    connection then ends as the store's side closes); with refuse = True,
    connections are accepted and closed at once. With cut_reset = True a
    cut resets the client's side (RST, no FIN first), as a store's host
    that crashed or rebooted does. Counts connections and cuts. The limits
    and cut_reset are taken when a connection is accepted."""

    def __init__(self, target_port, host=HOST):
        self.target = (host, target_port)
        self.cut_after = None
        self.cut_reset = False
        self.hold_after = None
        self.held = threading.Event()
        self.refuse = False
        self.cuts = 0
        self._live = set()           # (client, upstream) socket pairs
        self._live_lock = threading.Lock()
        super().__init__(host)

    @property
    def connections(self):
        return self.accepted

    def accepted_conn(self, conn):
        if self.refuse:
            conn.close()
            return
        threading.Thread(target=self._serve,
                         args=(conn, self.cut_after, self.hold_after, self.cut_reset),
                         daemon=True).start()

    def _serve(self, conn, cut_after, hold_after=None, cut_reset=False):
        try:
            up = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        conn.settimeout(None)
        # Like postern and Dovecot: no Nagle, or a small write behind a
        # larger one waits for a delayed ACK (40 ms per message).
        for s in (conn, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = threading.Event()
        with self._live_lock:
            self._live.add((conn, up))

        def pump(src, dst, limit, hold=None):
            sent = 0
            try:
                while not done.is_set():
                    data = src.recv(65536)
                    if not data:
                        break
                    if limit is not None and sent + len(data) >= limit:
                        dst.sendall(data[:max(0, limit - sent)])
                        self.cuts += 1
                        if cut_reset:
                            # close with a zero linger: RST at once
                            src.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                            src.close()
                        break
                    if hold is not None and sent + len(data) >= hold:
                        dst.sendall(data[:max(0, hold - sent)])
                        self.held.set()
                        # Forward nothing more; the other direction's end
                        # (the store going away) ends the connection.
                        done.wait(120)
                        break
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            done.set()
            for s in (conn, up):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(up, conn, None), daemon=True)
        t.start()
        pump(conn, up, cut_after, hold_after)
        t.join(5)
        with self._live_lock:
            self._live.discard((conn, up))
        conn.close()
        up.close()

    def drop_all(self):
        """Ends every connection open now, both sides, as a store that
        closes idle connections (or restarts) does; returns how many."""
        with self._live_lock:
            pairs = list(self._live)
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(pairs)


class PrivatePostfix:
    """A private Postfix (Debian postfix) as the MTA in front of postern: its
    own config_directory, queue_directory and data_directory under the run
    directory, smtpd on 127.0.0.1:smtp_port, mail for virtual_domains handed
    to `virtual_transport = lmtp:inet:127.0.0.1:<lmtp_port>` with XFORWARD,
    or, when lmtp_port is a path, to postern's UNIX socket
    (`lmtp:unix:<path>`, as the README recommends; Postfix's lmtp client
    runs unchrooted here, as user postfix, so the socket and its directories
    must let that user in). Never touches the system's Postfix; stop()
    stops this one."""

    def __init__(self, lmtp_port, name="postfix", smtp_port=None, domains=(DOMAIN,)):
        self.dir = os.path.join(run_root(), name)
        while os.path.exists(self.dir):
            self.dir += "_"
        self.conf_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "maillog")
        self.smtp_port = smtp_port or free_port()
        self.lmtp_port = lmtp_port
        self.domains = domains
        self.running = False
        os.makedirs(self.conf_dir)
        os.makedirs(self.data_dir)
        os.makedirs(self.queue_dir)
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        self._write_config()

    def _main_cf(self):
        """This Postfix's role in main.cf: an MTA handing mail for the
        virtual domains to postern's LMTP hop."""
        return """\
# private Postfix for postern's delivery tests (generated)
myhostname = mx.postern-test
mydomain = postern-test
myorigin = $myhostname
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = {domains}
virtual_transport = {transport}
lmtp_send_xforward_command = yes
# The LMTP conversation with postern in the log (XFORWARD is checked).
debug_peer_list = 127.0.0.1
debug_peer_level = 1
lmtp_connection_cache_on_demand = no
""".format(domains=", ".join(self.domains), transport=self.transport)

    def _write_config(self):
        # what every private Postfix shares: its own directories and log,
        # loopback only, no local delivery, slow retries (tests flush)
        main = self._main_cf() + """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
maillog_file = {log}
maillog_file_prefixes = {dir}
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
delay_warning_time = 0
notify_classes =
""".format(queue=self.queue_dir, data=self.data_dir, log=self.log_path, dir=self.dir)
        master = """\
127.0.0.1:{smtp} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""".format(smtp=self.smtp_port)
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(master)

    @property
    def transport(self):
        if isinstance(self.lmtp_port, str):
            return "lmtp:unix:%s" % self.lmtp_port
        return "lmtp:inet:127.0.0.1:%d" % self.lmtp_port

    def _postfix(self, *args, check=True):
        r = subprocess.run(["postfix", "-c", self.conf_dir] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=120)
        out = r.stdout.decode("utf-8", "replace")
        if check and r.returncode != 0:
            # Postfix reports to stderr only on a terminal; the log has it.
            raise RuntimeError("postfix %s failed (%d): %s%s" % (
                " ".join(args), r.returncode, out, tail(self.log_path, 10)))
        return out

    def start(self):
        self._postfix("check")
        for attempt in range(3):
            try:
                self._postfix("start")
                break
            except RuntimeError as e:
                # free_port() only knows that the port was free a moment
                # ago: another process may have taken it since.
                if attempt == 2 or "Address already in use" not in str(e):
                    raise
                self.smtp_port = free_port()
                self._write_config()
        self.running = True
        wait_ports([self.smtp_port], what="postfix")
        return self

    def stop(self):
        if not self.running:
            return
        self._postfix("stop", check=False)
        self.running = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and port_accepts(self.smtp_port):
            time.sleep(0.1)

    def flush(self):
        """Asks the queue manager to retry deferred mail now."""
        subprocess.run(["postqueue", "-c", self.conf_dir, "-f"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)

    def queue(self):
        """`postqueue -p` output."""
        r = subprocess.run(["postqueue", "-c", self.conf_dir, "-p"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        return r.stdout.decode("utf-8", "replace")

    def log_text(self, offset=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        return file_size(self.log_path)

    def send(self, sender, rcpts, message, timeout=IO_TIMEOUT):
        """SMTP to this Postfix; returns smtplib's refused dict."""
        s = smtplib.SMTP(HOST, self.smtp_port, timeout=timeout)
        try:
            s.ehlo("client.postern-test")
            return s.sendmail(sender, rcpts, message)
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass


class SmtpSink:
    """A small SMTP server on its own port that accepts every message and
    keeps it: self.messages is a list of {"mail_from", "rcpts", "data"}
    (data: bytes as sent, dot-unstuffed, CRLF), each also written to
    directory/NNNN.eml. Enough of RFC 5321 for smtplib and postern's copy
    relay: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT (pipelining
    works: commands are answered in order)."""

    def __init__(self, name="smtp-sink", port=None):
        self.dir = os.path.join(run_root(), name)
        while os.path.exists(self.dir):
            self.dir += "_"
        os.makedirs(self.dir)
        self.log_path = os.path.join(self.dir, "sink.log")
        self.messages = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = port or free_port()
        self._sock.bind((HOST, self.port))
        self._sock.listen(16)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _log(self, text):
        with self._lock:
            with open(self.log_path, "a") as f:
                f.write(text + "\n")

    def log_size(self):
        return file_size(self.log_path)

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(IO_TIMEOUT)
        f = conn.makefile("rb")
        out = conn.makefile("wb")

        def say(line):
            out.write(line.encode() + b"\r\n")
            out.flush()

        try:
            say("220 sink.postern-test ESMTP")
            mail_from, rcpts = None, []
            while True:
                line = f.readline(65536)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                self._log("C: " + cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    out.write(b"250-sink.postern-test\r\n250-PIPELINING\r\n"
                              b"250-8BITMIME\r\n250 SIZE 104857600\r\n")
                    out.flush()
                elif verb == "HELO":
                    say("250 sink.postern-test")
                elif verb == "MAIL":
                    m = re.match(r"(?i)MAIL FROM:\s*<([^>]*)>", cmd)
                    if not m:
                        say("501 5.5.4 syntax")
                        continue
                    mail_from, rcpts = m.group(1), []
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    m = re.match(r"(?i)RCPT TO:\s*<([^>]*)>", cmd)
                    if not m or mail_from is None:
                        say("503 5.5.1 bad sequence")
                        continue
                    rcpts.append(m.group(1))
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    if mail_from is None or not rcpts:
                        say("503 5.5.1 bad sequence")
                        continue
                    say("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while True:
                        l = f.readline(1 << 20)
                        if not l:
                            return
                        if l in (b".\r\n", b".\n"):
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        lines.append(l)
                    data = b"".join(lines)
                    with self._lock:
                        self.messages.append({"mail_from": mail_from, "rcpts": list(rcpts),
                                              "data": data})
                        n = len(self.messages)
                    with open(os.path.join(self.dir, "%04d.eml" % n), "wb") as mf:
                        mf.write(data)
                    self._log("stored message %d from <%s> to %s" % (n, mail_from, rcpts))
                    say("250 2.0.0 Ok: queued as SINK%d" % n)
                    mail_from, rcpts = None, []
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    say("250 2.0.0 Ok")
                elif verb == "NOOP":
                    say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 not implemented")
        except OSError:
            return
        finally:
            for x in (f, out, conn):
                try:
                    x.close()
                except OSError:
                    pass

    def received(self, needle=None):
        """The messages so far (those whose data contain needle)."""
        if isinstance(needle, str):
            needle = needle.encode()
        with self._lock:
            return [m for m in self.messages if needle is None or needle in m["data"]]

    def stop(self):
        self._stop = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)   # wakes the accept()
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        self._thread.join(5)


# ---------------------------------------------------------------------------
# clamd (malware scanning through the delivery hop)


def eicar():
    """The standard 68-byte EICAR anti-virus test string, built here so the
    repository does not hold it verbatim (tests/data/clamav/README.md)."""
    s = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" + "!$H+H*")
    assert len(s) == 68
    return s.encode("ascii")


class Clamd:
    """A private clamd (Debian clamav-daemon's /usr/sbin/clamd) in the
    foreground, on a UNIX socket in its own run directory, with the
    project's tiny signature database (tests/data/clamav: EICAR by MD5), no
    freshclam and StreamMaxLength stream_max. start() waits for the socket
    (a tiny database loads in about a second); stop() ends it (SIGTERM,
    then SIGKILL) and removes the socket, so "clamd down" is a refused
    connection. scan(data) asks it directly (INSTREAM), for self-checks."""

    def __init__(self, name="clamd", stream_max="50M", db_dir=None):
        self.dir = os.path.join(run_root(), name)
        while os.path.exists(self.dir):
            self.dir += "_"
        os.makedirs(self.dir)
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.log_path = os.path.join(self.dir, "clamd.log")
        self.conf_path = os.path.join(self.dir, "clamd.conf")
        self.db_dir = os.path.join(self.dir, "db")
        shutil.copytree(db_dir or os.path.join(SRC, "tests", "data", "clamav"), self.db_dir,
                        ignore=shutil.ignore_patterns("*.md"))
        self.proc = None
        self._err = None
        self.set_stream_max(stream_max)
        open(self.log_path, "a").close()

    def set_stream_max(self, stream_max):
        """Writes the configuration with StreamMaxLength stream_max (e.g.
        "50M"); a running clamd reads it at its next start()."""
        with open(self.conf_path, "w") as f:
            f.write("Foreground yes\n"
                    "LocalSocket %s\n"
                    "LocalSocketMode 666\n"
                    "DatabaseDirectory %s\n"
                    "TemporaryDirectory %s\n"
                    "LogFile %s\n"
                    "LogTime yes\n"
                    "LogVerbose yes\n"
                    "LogClean yes\n"
                    "StreamMaxLength %s\n"
                    "SelfCheck 0\n" % (self.socket, self.db_dir, self.dir, self.log_path,
                                       stream_max))

    def start(self, timeout=START_TIMEOUT):
        if self.running():
            return self
        self._err = open(os.path.join(self.dir, "clamd.stderr"), "ab")
        self.proc = subprocess.Popen(["clamd", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited (%s); log:\n%s\n%s" % (
                    self.proc.returncode, tail(self.log_path),
                    tail(os.path.join(self.dir, "clamd.stderr"))))
            try:
                return self.ping()
            except OSError:
                return False
        wait_for(ready, timeout, interval=0.1, what="clamd socket")
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._err.close()
        try:
            os.unlink(self.socket)
        except OSError:
            pass

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_size(self):
        return file_size(self.log_path)

    def scans(self):
        """Streams clamd scanned so far (LogClean: one "instream(...): OK"
        or "... FOUND" line each; written around the time of the reply)."""
        with open(self.log_path, errors="replace") as f:
            return sum(1 for line in f if "instream(" in line and
                       (line.rstrip().endswith(" OK") or line.rstrip().endswith(" FOUND")))

    def _talk(self, payload, timeout=IO_TIMEOUT):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.socket)
            s.sendall(payload)
            out = b""
            while not out.endswith(b"\0"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.rstrip(b"\0").decode("ascii", "replace")
        finally:
            s.close()

    def ping(self):
        return self._talk(b"zPING\0", timeout=2) == "PONG"

    def scan(self, data, chunk=65536):
        """clamd's INSTREAM reply for data: "stream: OK", "stream: <Name>
        FOUND", or "... ERROR"."""
        import struct
        frames = [b"zINSTREAM\0"]
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            frames.append(struct.pack("!I", len(part)) + part)
        frames.append(b"\0\0\0\0")
        return self._talk(b"".join(frames))


# Last, so that every class above is defined when the demo runs.
if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        demo_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "selftest":
        selftest_main(sys.argv[2:])
    else:
        sys.exit("usage: harness.py demo [--dir DIR] | selftest")

"""The README's quick-start demo (`harness.py demo`, what scripts/quickstart.sh
runs after installing and building): it starts, serves the printed commands
(curl over IMAPS and POP3S, swaks into the LMTP hop with the demo rules),
refuses the demo's disabled users, and stops cleanly on SIGTERM.

The demo listens on fixed ports (10143, 10993, 10110, 10995, 10024, 18025
and Dovecot's 11143, 11110, 11024); the test is skipped when one of them is
taken (a developer's demo running meanwhile)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEMO_PORTS, USERS, main, port_accepts  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ALICE = "alice@example.com"
BOB = "bob@example.com"
DOVECOT_PORTS = (11143, 11110, 11024)


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "20"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


class QuickstartDemoTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        taken = [p for p in list(DEMO_PORTS.values()) + list(DOVECOT_PORTS)
                 if port_accepts(p)]
        if taken:
            raise unittest.SkipTest("demo ports in use: %s" % taken)
        cls.dir = tempfile.mkdtemp(prefix="postern-demo-test-",
                                   dir=os.environ.get("POSTERN_TEST_TMP", "/tmp"))
        os.chmod(cls.dir, 0o755)
        cls.demo_dir = os.path.join(cls.dir, "demo")
        cls.out_path = os.path.join(cls.dir, "demo.out")
        cls.out = open(cls.out_path, "wb")
        env = dict(os.environ, POSTERN_BIN=harness.POSTERN_BIN,
                   POSTERNCTL_BIN=harness.POSTERNCTL_BIN, PYTHONUNBUFFERED="1")
        cls.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "harness.py"), "demo",
                                     "--dir", cls.demo_dir],
                                    stdout=cls.out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if "postern demo is running" in cls.output():
                break
            if cls.proc.poll() is not None:
                break
            time.sleep(0.2)
        if "postern demo is running" not in cls.output():
            cls.stop_demo()
            raise AssertionError("the demo did not start:\n%s" % cls.output()[-4000:])

    @classmethod
    def output(cls):
        with open(cls.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    @classmethod
    def stop_demo(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(60)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(10)
        cls.out.close()

    @classmethod
    def tearDownClass(cls):
        cls.stop_demo()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def printed(self, pattern):
        """The first printed command line matching pattern."""
        m = re.search(pattern, self.output(), re.M)
        self.assertIsNotNone(m, "not in the demo's output: %s" % pattern)
        return m.group(0)

    def test_1_printed_commands_work(self):
        # what the demo prints, as printed
        self.printed(r"curl -k 'imaps://127\.0\.0\.1:10993/INBOX;UID=1' -u alice@example\.com:\S+")
        r = curl("imaps://127.0.0.1:%d/INBOX;UID=1" % DEMO_PORTS["imaps"],
                 "-u", "%s:%s" % (ALICE, USERS[ALICE]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Welcome to postern, alice", r.stdout)
        r = curl("pop3s://127.0.0.1:%d/1" % DEMO_PORTS["pop3s"],
                 "-u", "%s:%s" % (ALICE, USERS[ALICE]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Welcome to postern, alice", r.stdout)
        r = curl("--ssl-reqd", "imap://127.0.0.1:%d/" % DEMO_PORTS["imap"],
                 "-u", "%s:%s" % (ALICE, USERS[ALICE]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"INBOX", r.stdout)

    def test_2_disabled_user_refused(self):
        # bob's IMAP is off in the demo policy (conf/demo-users.json)
        self.assertRegex(self.output(), r"bob@example\.com\s+imap")
        r = curl("imaps://127.0.0.1:%d/INBOX;UID=1" % DEMO_PORTS["imaps"],
                 "-u", "%s:%s" % (BOB, USERS[BOB]))
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn(b"Welcome to postern", r.stdout)

    def test_3_rules_on_the_delivery_hop(self):
        # the printed swaks command: a "special offer" goes to alice's Junk,
        # its subject tagged by the demo rule
        self.printed(r"swaks --server 127\.0\.0\.1:10024 --protocol LMTP")
        subject = "a special offer %d" % os.getpid()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % DEMO_PORTS["lmtp"],
                            "--protocol", "LMTP", "--from", "x@partner.example",
                            "--to", ALICE, "--header", "Subject: %s" % subject],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode("utf-8", "replace")[-2000:])
        deadline = time.monotonic() + 20
        while True:
            r = curl("imaps://127.0.0.1:%d/Junk;UID=1" % DEMO_PORTS["imaps"],
                     "-u", "%s:%s" % (ALICE, USERS[ALICE]))
            if r.returncode == 0 and subject.encode() in r.stdout:
                break
            self.assertLess(time.monotonic(), deadline, "not in Junk: %r %r" %
                            (r.stdout[-500:], r.stderr[-500:]))
            time.sleep(0.5)
        # the rule appends its text to the subject (spec: "append to subject")
        self.assertIn(b"Subject: " + subject.encode() + b" [offer]", r.stdout)
        self.assertIn(b"X-Postern-Rule: Offers to Junk", r.stdout)

    def test_4_admin_listener(self):
        r = curl("http://127.0.0.1:%d/healthz" % DEMO_PORTS["admin"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = curl("http://127.0.0.1:%d/metrics" % DEMO_PORTS["admin"])
        self.assertIn(b"postern_logins_total", r.stdout)

    def test_5_stops_on_sigterm(self):
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(60), 0, self.output()[-3000:])
        for p in list(DEMO_PORTS.values()) + list(DOVECOT_PORTS):
            self.assertFalse(port_accepts(p), "port %d still open after the demo" % p)
        # postern logs to the demo's output: no sanitizer report there
        self.assertIsNone(harness.Postern.SANITIZER_RX.search(self.output()),
                          self.output()[-3000:])
        self.assertIn("demo stopped", self.output())


if __name__ == "__main__":
    main()

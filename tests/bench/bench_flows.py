"""tests/bench/bench_flows.py: the pieces run_bench.py needs for the mail
flows (LMTP delivery and SMTP submission), built on the integration tests'
classes without changing them:

  FlowDovecot   harness.DeliveryDovecot (LMTP on 127.0.0.1) plus
                test_submission.SubmissionDovecot (submission-login on
                127.0.0.1, plaintext AUTH, relaying to a sink)
  FlowPostern   harness.DeliveryPostern (LMTP listeners, spool, delivery
                group) whose backend servers also get submission_port
  Sink          the relay target of Dovecot's submission service: Postfix's
                `smtp-sink` (C, discards every message) when installed, else
                test_submission.SmtpSink (Python asyncio, writes every
                message to a folder: slower, and then it may be the limit)
"""

import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import DeliveryDovecot, DeliveryPostern  # noqa: E402
from test_submission import SmtpSink, SubmissionDovecot  # noqa: E402


class FlowDovecot(SubmissionDovecot, DeliveryDovecot):
    """IMAP, POP3, LMTP (self.lmtp_port) and submission
    (self.submission_port, relaying to relay_port), all on 127.0.0.1.
    SubmissionDovecot.__init__ takes relay_port and passes the rest on to
    DeliveryDovecot, then harness.Dovecot."""


class FlowPostern(DeliveryPostern):
    """DeliveryPostern (one pool "store" with imap/pop3/lmtp ports) whose
    servers also get the Dovecot's submission_port, so Listener("submission",
    ..., backend="store") works."""

    def config_text(self):
        text = super().config_text()
        return re.sub(r"(pop3_port = \d+;)",
                      r"\1 submission_port = %d;" % self.dovecot.submission_port, text)


class Sink:
    """An SMTP sink on 127.0.0.1:self.port for Dovecot's submission relay."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.py = None
        self.binary = shutil.which("smtp-sink") or (
            "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None)
        self.kind = "smtp-sink" if self.binary else "python SmtpSink"
        if self.binary:
            self.port = harness.free_port()
        else:
            self.py = SmtpSink(directory=os.path.join(self.dir, "sink"))
            self.port = self.py.port

    def start(self):
        if self.binary:
            args = [self.binary]
            if os.geteuid() == 0:
                # it drops to this user after binding; any unprivileged one
                for u in ("postfix", "nobody"):
                    try:
                        import pwd
                        pwd.getpwnam(u)
                        args += ["-u", u]
                        break
                    except KeyError:
                        continue
            args += ["%s:%d" % (harness.HOST, self.port), "1024"]
            self._log = open(os.path.join(self.dir, "smtp-sink.log"), "ab")
            self.proc = subprocess.Popen(args, stdout=self._log, stderr=self._log,
                                         stdin=subprocess.DEVNULL)
            harness.wait_ports([self.port], proc=self.proc, what="smtp-sink")
        else:
            self.py.start()
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self._log.close()
        if self.py is not None:
            self.py.stop()

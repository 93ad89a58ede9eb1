"""Real mail servers on loopback for the email tests: a Dovecot IMAP instance and an aiosmtpd sink."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.eventually import eventually_sync

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
PASSWORD = "pw"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = opsbot-test-{port}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Dovecot:
    """One Dovecot instance: loopback, no TLS, any user with password `pw`, maildirs in a temp dir.

    As root, mail is owned by the `dovecot` user (imap-login refuses to run as root, and the
    mail processes must not either); otherwise every process runs as the current user.
    """

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and dovecot's users must get in.
        self.root = Path(tempfile.mkdtemp(prefix="opsbot-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        if os.geteuid() == 0:
            account = pwd.getpwnam("dovecot")
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
        else:
            account = pwd.getpwuid(os.getuid())
            login_user = internal_user = account.pw_name
            internal_group = grp.getgrgid(account.pw_gid).gr_name
        self.uid, self.gid = account.pw_uid, account.pw_gid
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", self.uid, self.gid)
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                login_user=login_user,
                internal_user=internal_user,
                internal_group=internal_group,
                uid=self.uid,
                gid=self.gid,
                password=PASSWORD,
            )
        )

    def start(self) -> None:
        """Run dovecot in the foreground as our child, so we reap it (some containers' init never does)."""
        with open(self.root / "dovecot.out", "ab") as out:
            self.proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf)], stdout=out, stderr=out, start_new_session=True
            )
        eventually_sync(
            lambda: _listening(self.port) or self.proc.poll() is not None, f"dovecot on 127.0.0.1:{self.port}"
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {self.log()}")

    def stop(self) -> None:
        """`doveadm stop`, reaping the server while doveadm waits for it to go."""
        if self.proc is None:
            return
        doveadm = subprocess.Popen(
            [DOVEADM, "-c", str(self.conf), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        doveadm.wait(timeout=10)
        self.proc = None

    def crash(self) -> None:
        """Kill the server and all its processes at once: every connection drops without a goodbye."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        eventually_sync(lambda: not _listening(self.port), "dovecot going away")

    def kick(self, user: str) -> None:
        """Drop every IMAP connection of `user` (the server closes them)."""
        subprocess.run(
            [DOVEADM, "-c", str(self.conf), "kick", user],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def deliver_offline(self, user: str, raw: bytes) -> None:
        """Put a mail straight into the user's maildir, as an MTA would, even while dovecot is stopped."""
        new = self.root / "mail" / user / "new"
        name = f"{time.time_ns()}.opsbot{os.getpid()}.test"
        (new / name).write_bytes(raw)
        os.chown(new / name, self.uid, self.gid)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        paths = [self.root / "dovecot.out", self.root / "dovecot.log"]
        return "".join(path.read_text() for path in paths if path.exists())


@dataclass
class Sent:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpSink:
    """Records every mail it accepts; `to(address)` lists those for one recipient, in order."""

    sent: list[Sent] = field(default_factory=list)
    port: int = 0
    refusals: list[str] = field(default_factory=list)  # SMTP answers for the coming mails, instead of 250
    rcpt_refusals: list[str] = field(default_factory=list)  # the same, to the coming RCPT TO commands

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_refusals:
            return self.rcpt_refusals.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusals:
            return self.refusals.pop(0)
        msg = message_from_bytes(bytes(envelope.content or b""), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.sent.append(Sent(str(envelope.mail_from), list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [s.message for s in self.sent if address in s.recipients]

    async def serve(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        # aiosmtpd's Controller(port=0) cannot report the port it got; a plain server can.
        server = await loop.create_server(lambda: SMTP(self, hostname="smtp.test"), "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

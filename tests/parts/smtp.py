"""An SMTP server started by the test (aiosmtpd): records every message, optionally offers
STARTTLS (a self-signed certificate) and requires a login."""

from __future__ import annotations

import email
import ssl
import subprocess
from email.message import Message
from pathlib import Path

from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import require


class SmtpReceiver:
    """`SmtpReceiver(tmp_path, starttls=True, login=("alerts", "pw")).start()`; `messages` holds what arrived."""

    def __init__(self, folder: Path, starttls: bool = False, login: tuple[str, str] | None = None):
        self.folder, self.starttls, self.login = Path(folder), starttls, login
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self.controller = None
        self.ca_file: str | None = None

    def start(self) -> SmtpReceiver:
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
        except ImportError:
            require(False, "aiosmtpd is missing: run ./ops test (it installs the test extras) or pip install aiosmtpd")
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                receiver.messages.append(email.message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and receiver.login is not None and \
                (auth_data.login.decode(), auth_data.password.decode()) == receiver.login
            if ok:
                receiver.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        options: dict = {"hostname": "127.0.0.1", "port": free_port()}
        if self.starttls:
            options["tls_context"] = self._tls_context()
            options["require_starttls"] = True
        if self.login is not None:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=self.starttls)
        else:
            options.update(auth_require_tls=False)
        self.controller = Controller(Handler(), **options)
        self.controller.start()
        self.port = self.controller.port
        return self

    def _tls_context(self) -> ssl.SSLContext:
        key, cert = self.folder / "smtp.key", self.folder / "smtp.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
        self.ca_file = str(cert)          # self-signed: the client trusts it through SMTP_CA_FILE
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        return context

    def url(self, scheme: str = "smtp") -> str:
        who = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"{scheme}://{who}127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

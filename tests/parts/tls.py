"""A TLS server with a self-signed certificate of a chosen validity."""

from __future__ import annotations

import threading


class TlsServed:
    """What a test TLS server saw: its address, completed handshakes, failed ones."""

    def __init__(self):
        self.target = ""
        self.handshakes = 0
        self.failures: list[str] = []


def serve_tls_certificate(days_valid: int):
    """Context manager: a TLS server on 127.0.0.1 with a self-signed certificate valid `days_valid`
    more days; yields a TlsServed (`.target` is 'host:port')."""
    import contextlib
    import datetime as dt
    import socket
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    @contextlib.contextmanager
    def serving():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ubertruck.test")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=days_valid)).sign(key, hashes.SHA256()))
        with tempfile.TemporaryDirectory() as folder:
            cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
            with open(cert_path, "wb") as handle:
                handle.write(cert.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as handle:
                handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_path, key_path)
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(5)
            listener.settimeout(0.2)
            stop = threading.Event()
            served = TlsServed()
            served.target = f"127.0.0.1:{listener.getsockname()[1]}"

            def serve():
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()     # times out every 0.2 s to look at `stop`
                    except TimeoutError:
                        continue
                    try:
                        tls = context.wrap_socket(conn, server_side=True)
                    except (OSError, ssl.SSLError) as exc:
                        served.failures.append(f"{type(exc).__name__}: {exc}")
                        conn.close()
                        continue
                    served.handshakes += 1
                    tls.close()         # the client only wants the certificate
            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            try:
                yield served
            finally:
                stop.set()
                thread.join(timeout=5)
                listener.close()
    return serving()


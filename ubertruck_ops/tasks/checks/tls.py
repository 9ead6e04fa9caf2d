"""Check of a TLS certificate's expiry (the guide's 'SSL certificate expiry < 30 days')."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from cryptography import x509

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult


def certificate_expiry(target: str, warn_days: int, timeout: float = 10) -> CheckResult:
    """Days until `target`'s (host[:port]) certificate expires: low priority within `warn_days`,
    critical once expired; error when no certificate could be read."""
    host, _, port = target.partition(":")
    name = f"tls {target}"
    try:
        pem = ssl.get_server_certificate((host, int(port or 443)), timeout=timeout)
    except (OSError, ValueError) as exc:
        return checks.error(name, f"cannot read the certificate of {target}: {exc}")
    expires = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    return checks.expiry(name, days, warn_days, f"{expires:%Y-%m-%d}")

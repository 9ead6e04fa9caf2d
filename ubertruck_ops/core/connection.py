"""Connection decisions: which hosts are this machine, the sslmode a DATABASE_URL gets by
default, whether an sslmode needs a TLS-capable libpq, and which client tools fit a server."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

# sslmode values libpq accepts only when built with TLS (OpenSSL).
TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


def is_local_host(host: str) -> bool:
    """Return True for a host on this machine: empty (libpq's default socket), a socket folder
    (/...) or abstract socket (@...), localhost, an address in 127.0.0.0/8 or ::1."""
    host = host.strip()
    if host in ("", "localhost") or host.startswith(("/", "@")):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# RFC 1123 labels (underscores too: container and service names carry them), at most 253 characters.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
_ABSTRACT_SOCKET = re.compile(r"@[A-Za-z0-9._/-]+")


def is_ip_address(text: str) -> bool:
    """Return True for an IPv4 or IPv6 address (brackets and a zone allowed)."""
    try:
        ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        return False


def is_valid_host(host: str) -> bool:
    """Return True when `host` is what libpq's host may be: a host name, an IP address, a socket
    folder (an absolute path) or an abstract socket (@name); or empty (libpq's default). An `@`
    anywhere else means user info leaked into the host: an unencoded @ in the password makes libpq
    end the password there and read the rest as the host."""
    if host == "":
        return True
    if host.startswith("/"):
        return "@" not in host and "\x00" not in host
    if host.startswith("@"):
        return bool(_ABSTRACT_SOCKET.fullmatch(host)) and "@" not in host[1:]
    return is_ip_address(host) or bool(_HOST_NAME.fullmatch(host))


def default_sslmode(hosts: str, sslmode: str | None, sslrootcert: str | None = None,
                    requiressl: str | None = None, hostaddr: str | None = None) -> str | None:
    """Given libpq's comma-separated host list, the URL's sslmode, sslrootcert, legacy requiressl and
    hostaddr list, return the sslmode to use: the URL's own when it gives one (or requiressl, which
    libpq turns into one); else `verify-full` when a root certificate is given (checking the
    server against it is why one gives it); else `require` when any server is off this machine
    (several are local only if all are); else None (libpq's own default, prefer).

    Where a hostaddr is given libpq connects to that address, whatever the host says (the host then
    only names the server for TLS and the password file): `host=localhost&hostaddr=10.0.0.5` is a
    remote server."""
    if sslmode or requiressl:
        return sslmode or None
    if sslrootcert:
        return "verify-full"
    if not all(is_local_host(h) for h in connected_to(hosts, hostaddr)):
        return "require"
    return None


def connected_to(hosts: str, hostaddr: str | None) -> list[str]:
    """Given libpq's host and hostaddr lists, return where each connection attempt goes: the
    hostaddr at that position when given, else the host. A hostaddr list that does not pair up
    with the hosts (libpq refuses it) counts every address and host."""
    names = hosts.split(",")
    addresses = (hostaddr or "").split(",") if hostaddr else []
    if not addresses:
        return names
    if len(addresses) != len(names):
        return names + addresses
    return [address.strip() or name for name, address in zip(names, addresses)]


def needs_tls(sslmode: str | None) -> bool:
    """Return True when libpq must be built with TLS to accept `sslmode` at all."""
    return (sslmode or "").lower() in TLS_SSLMODES


@dataclass(frozen=True)
class ClientTools:
    """A folder of PostgreSQL client tools: its major version and whether its libpq speaks TLS."""

    folder: str
    major: int
    tls: bool

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def describe(self) -> str:
        return f"PostgreSQL {self.major} in {self.folder} ({'with' if self.tls else 'without'} TLS)"


def choose_client_tools(candidates: list[ClientTools], server_major: int | None,
                        sslmode: str | None) -> ClientTools | None:
    """Return the client tools for a server of `server_major` (None: any) reached with `sslmode`:
    the newest candidate of that major or newer (pg_dump must not be older than the server), with
    TLS when the sslmode needs it; among equal majors the first given. None when none fits."""
    tls = needs_tls(sslmode)
    fitting = [t for t in candidates if (server_major is None or t.major >= server_major) and (t.tls or not tls)]
    return max(fitting, key=lambda t: t.major, default=None)   # max keeps the first of equals


def no_client_tools_message(wanted: str, server_major: int | None, sslmode: str | None,
                            candidates: list[ClientTools]) -> str:
    """Return the error for choose_client_tools finding nothing: what was needed, what is here,
    the install command, and, for a server newer than every TLS-capable client here, the
    unencrypted alternative and its condition."""
    tls = needs_tls(sslmode)
    server = f"a PostgreSQL {server_major} server" if server_major else "the server"
    major = server_major or max((t.major for t in candidates), default=0)
    found = "; ".join(t.describe() for t in candidates) or "none"
    mode = sslmode or "prefer (libpq's default)"
    text = (f"{wanted} for {server} with sslmode={mode} needs client tools of PostgreSQL {major} or newer"
            f"{' built with TLS (OpenSSL)' if tls else ''}; found: {found}. Install them with "
            f"`sudo apt-get install -y postgresql-client-{major}` (Debian/Ubuntu; the PGDG repository has every "
            "version)")
    if tls and major > max((t.major for t in candidates if t.tls), default=0):
        text += (f". If no TLS-capable PostgreSQL {major} client can be installed here, the alternative is "
                 "sslmode=prefer or sslmode=disable in DATABASE_URL, and only on a trusted network (the "
                 "connection is then unencrypted and the server unverified)")
    return text

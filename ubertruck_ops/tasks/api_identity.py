"""Who serves a Prefect API on this host, read from the kernel's socket tables (/proc/net/tcp, tcp6),
checked before a credential is sent to it or an answer from it believed.

Any local user may listen on a free port. One who takes 127.0.0.1:4200 while `serve` is down (or
before it starts) would receive the basic-auth string from every client that sends it there, and
could answer block reads with a key and an S3 endpoint of its own. The kernel records who owns each
socket: the uid column of a LISTEN entry, and of the server's half of every connection (copied from
the listener when the connection arrives, before anyone accepts it). So a client connects, finds the
other half of its own connection in the table and, before it writes a byte, refuses unless that half
belongs to a user it trusts: itself, root, the owner of PREFECT_HOME/api-auth-string (the user that
runs `serve`) or the user named in UBERTRUCK_API_USER. A peer that is not in this host's table is on
another host: no uid to check there (TLS is what protects a remote API; docs/configuration.md).

No Prefect here: `wal-push` (one process per WAL segment) uses this too.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pwd
import socket
import struct
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path

API_USER_VARIABLE = "UBERTRUCK_API_USER"
# The private API's auth string lives in this file under PREFECT_HOME (0600, its owner trusted);
# deployments/api.py writes it, tasks/block_documents.py reads it.
AUTH_FILE = "api-auth-string"
# The URL of a private API (one `ubertruck-ops run` or `serve` started for itself), set by
# deployments/api.private_api: a lease it granted dies with it (tasks/locks.py).
PRIVATE_API_VARIABLE = "UBERTRUCK_PRIVATE_API_URL"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"
_PROBE_SECONDS = 5
BACKLOG = 2048                  # uvicorn's default


class UntrustedApi(ValueError):
    """The Prefect API's address on this host is held by a user we do not trust, or by nobody."""


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def trusted_users(environ: Mapping[str, str] | None = None, auth_file: Path | None = None) -> dict[int, str]:
    """Return {uid: why it is trusted}: this user, root, the owner of `auth_file` when it exists, and
    UBERTRUCK_API_USER (a name or a uid). Raise UntrustedApi when UBERTRUCK_API_USER names no user."""
    environ = os.environ if environ is None else environ
    trusted = {0: "root"}
    trusted[os.geteuid()] = f"this user ({user_name(os.geteuid())})"
    if auth_file is not None:
        try:
            owner = os.stat(auth_file, follow_symlinks=False).st_uid
            trusted.setdefault(owner, f"the owner of {auth_file} ({user_name(owner)})")
        except OSError:
            pass
    named = (environ.get(API_USER_VARIABLE) or "").strip()
    if named:
        try:
            uid = int(named) if named.isdigit() else pwd.getpwnam(named).pw_uid
        except KeyError:
            raise UntrustedApi(f"{API_USER_VARIABLE}={named!r} names no user on this host: set it to the user "
                               "that runs your Prefect server") from None
        trusted.setdefault(uid, f"{API_USER_VARIABLE} ({user_name(uid)})")
    return trusted


def _kernel_forms(ip: str, port: int) -> set[str]:
    """The ways /proc/net/tcp{,6} may print ip:port (an IPv4 peer of a dual-stack socket appears as
    ::ffff:a.b.c.d). Each 32-bit word is printed in host byte order."""
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    packed = [address.packed]
    if isinstance(address, ipaddress.IPv4Address):
        packed.append(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed).packed)
    forms = set()
    for raw in packed:
        words = struct.unpack(f"={len(raw) // 4}I", raw)
        forms.add("".join(f"{word:08X}" for word in words) + f":{port:04X}")
    return forms


def _rows() -> Iterator[list[str]]:
    """Every socket row: [sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode, ...]."""
    for table in _TABLES:
        try:
            with open(table) as rows:
                next(rows, None)
                for line in rows:
                    yield line.split()
        except FileNotFoundError:       # a kernel without IPv6
            continue


def _is_local_address(ip: str) -> bool:
    """Whether `ip` is one of this host's addresses (a socket may bind to it)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


def listeners(ip: str, port: int) -> list[tuple[int, int]]:
    """Return (uid, inode) of every socket listening where a connection to ip:port would arrive:
    bound to that address or to every address (0.0.0.0, ::)."""
    wanted = _kernel_forms(ip, port) | _kernel_forms("0.0.0.0", port) | _kernel_forms("::", port)
    return [(int(row[7]), int(row[9])) for row in _rows() if row[3] == _LISTEN and row[1] in wanted]


def peer_owner(sock: socket.socket) -> int | None:
    """Given a connected TCP socket, return the uid owning the server side when it is on this host,
    None when it is on another host. Raise UntrustedApi when the peer is on this host but its owner
    cannot be read."""
    mine, peer = sock.getsockname()[:2], sock.getpeername()[:2]
    theirs, ours = _kernel_forms(*peer), _kernel_forms(*mine)
    for row in _rows():
        if row[1] in theirs and row[2] in ours:
            return int(row[7])
    if not _is_local_address(peer[0]):
        return None
    # A listener whose queue is full answers with a SYN cookie and keeps no half of the connection
    # yet: its LISTEN entry still says who owns it.
    owners = {uid for uid, _ in listeners(peer[0], peer[1])}
    if len(owners) == 1:
        return owners.pop()
    raise UntrustedApi(f"cannot tell which user listens on {peer[0]}:{peer[1]}: refusing to send anything there")


def check_connection(sock: socket.socket, url: str, trusted: Mapping[int, str]) -> None:
    """Raise UntrustedApi unless the server side of `sock` (connected for `url`) is on another host
    or owned by a `trusted` user. Nothing has been sent yet when this is called."""
    owner = peer_owner(sock)
    if owner is None or owner in trusted:
        return
    ip, port = sock.getpeername()[:2]
    name = user_name(owner)
    raise UntrustedApi(
        f"refusing the Prefect API at {url}: port {port} on {ip} is held by user {name} (uid {owner}), "
        f"which this command does not trust (it trusts {', '.join(sorted(set(trusted.values())))}); nothing was "
        f"sent to it. If that is not your Prefect server, another local user has taken its port: stop that "
        f"process (`ss -ltnp 'sport = :{port}'` names it) and start `ubertruck-ops serve` again. If {name} does "
        f"run your Prefect server, set {API_USER_VARIABLE}={name}.")


def needs_check(url: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `url`'s server must prove its owner: plain http, or https without certificate checks
    (a verified certificate proves the server's identity instead)."""
    environ = os.environ if environ is None else environ
    scheme = urllib.parse.urlsplit(url).scheme
    insecure = (environ.get("PREFECT_API_TLS_INSECURE_SKIP_VERIFY") or "").lower() in ("1", "true", "yes")
    return scheme == "http" or (scheme == "https" and insecure)


def check_api(url: str, trusted: Mapping[int, str], environ: Mapping[str, str] | None = None) -> None:
    """For clients that cannot check each connection (Prefect's own): connect to `url`'s address once
    and check who holds it, sending nothing. Raise UntrustedApi when another user holds it, or when
    nothing listens on a loopback address (so nothing can be sent there before someone does)."""
    if not needs_check(url, environ):
        return
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        probe = socket.create_connection((host, port), timeout=_PROBE_SECONDS)
    except ConnectionRefusedError:
        if _loopback_name(host):
            raise UntrustedApi(f"nothing listens on {host}:{port}, the Prefect API at {url}: start the server "
                               "(`ubertruck-ops serve`) first, or set PREFECT_API_URL to where it runs") from None
        return              # another host that is down: Prefect's client says so itself
    except OSError:
        return
    with probe:
        check_connection(probe, url, trusted)


def _loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def process_tree(pid: int) -> set[int]:
    """Return `pid` and every process descended from it."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        found = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return tree


def socket_inodes(pids: set[int]) -> dict[int, int]:
    """Return {socket inode: pid} for every socket the processes `pids` hold open."""
    held = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                held[int(target[8:-1])] = pid
    return held


def holder(ip: str, port: int) -> str:
    """Describe who listens on ip:port ('user nobody (uid 65534), pid 1234'), or 'nobody listens'."""
    found = listeners(ip, port)
    if not found:
        return "no process"
    uid, inode = found[0]
    pids = [pid for pid_inode, pid in _all_sockets().items() if pid_inode == inode]
    return f"user {user_name(uid)} (uid {uid})" + (f", pid {pids[0]}" if pids else "")


def _all_sockets() -> dict[int, int]:
    return socket_inodes({int(name) for name in os.listdir("/proc") if name.isdigit()})


def listen_on(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port for a server we start (port 0: a free port the kernel picks, so
    there is no moment between choosing it and binding it). Raise UntrustedApi naming the holder
    when someone already listens there: nothing is started and nothing is sent."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    # A restart must not wait for old connections' TIME_WAIT; a port someone LISTENs on still
    # refuses us (SO_REUSEADDR never shares a listening port, and we never set SO_REUSEPORT).
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as exc:
        listener.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UntrustedApi(
            f"port {port} on {host} is held by {holder(address[0], port)} already: nothing was started and no "
            f"credential sent. If that is not a Prefect server of yours, another local user has taken the API's "
            f"port: stop that process (`ss -ltnp 'sport = :{port}'` names it) and start serve again; or choose "
            f"another --port.") from None
    return listener


def held_by(host: str, port: int, pid: int, ours: set[int]) -> bool:
    """Return whether anything listens where connections to host:port arrive. Raise UntrustedApi when
    a socket listening there is not held by process `pid` (a server we started) or its children.
    `ours` collects the listening sockets already found to be theirs, so the process table is read
    once, not on every call."""
    found = {entry for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
             for entry in listeners(info[4][0], port)}
    if {inode for _, inode in found} - ours:
        ours |= set(socket_inodes(process_tree(pid))) & {inode for _, inode in found}
        strangers = sorted(uid for uid, inode in found if inode not in ours)
        if strangers:
            raise UntrustedApi(
                f"port {port} on {host} is held by user {user_name(strangers[0])} (uid {strangers[0]}), not by the "
                f"Prefect server we started (pid {pid}): nothing was sent to it. Stop that process "
                f"(`ss -ltnp 'sport = :{port}'` names it), or choose another port.")
    return bool(found)

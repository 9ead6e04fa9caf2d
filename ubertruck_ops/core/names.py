"""Names that reach PostgreSQL or a shell: database names cut the way the server counts them,
and paths and settings that a tool runs through `sh -c` (pg_ctl's -D/-l/-o, restore_command).

PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 *bytes*. Cutting by characters let a
long multibyte name's staging and kept names collide with each other after the server's own cut.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from pathlib import Path

MAX_NAME_BYTES = 63

# What may appear in a value that a shell sees: no quotes, $, `, \, spaces, newlines; no % (PostgreSQL
# substitutes %f/%p in restore_command) and no comma (unix_socket_directories is a list).
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
_SETTING_NAME = re.compile(r"[a-z_][a-z0-9_.]*")
_SETTING_VALUE = re.compile(r"[A-Za-z0-9._:/+%, -]*")


# A service name becomes a folder of the release (APP_ROOT/releases/<tag>/<name>), a PM2 app name and log
# file names: lowercase letters, digits and dashes only, so it can never be `..`, a path or an option.
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def service_problem(name: object, port: object) -> str | None:
    """Given one service's name and port, return what is wrong with them, or None: the name must be
    lowercase letters, digits and dashes starting with a letter or digit (at most 63 characters); the
    port a number from 1 to 65535."""
    if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
        return (f"service name {name!r} must be lowercase letters, digits and dashes, starting with a letter or "
                "digit (it becomes a folder, a PM2 app and log file names)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return f"service {name}'s port {port!r} must be a number from 1 to 65535"
    return None


def truncate_bytes(text: str, limit: int = MAX_NAME_BYTES) -> str:
    """Given text, return its longest prefix of at most `limit` UTF-8 bytes that ends on a character."""
    return text.encode()[:limit].decode(errors="ignore")


def _with_suffix(database: str, suffix: str) -> str:
    if len(suffix.encode()) >= MAX_NAME_BYTES:
        raise ValueError(f"suffix {suffix!r} leaves no room for the database name")
    return truncate_bytes(database, MAX_NAME_BYTES - len(suffix.encode())) + suffix


def staging_name(database: str, token: str) -> str:
    """Given the target database and a per-run token, return the staging database's name (at most 63
    bytes, never the target's). Raise ValueError when the token is not lowercase letters and digits."""
    if not re.fullmatch(r"[a-z0-9]{4,16}", token):
        raise ValueError(f"staging token {token!r} must be 4-16 lowercase letters or digits")
    name = _with_suffix(database, f"_restoring_{token}")
    if name == database:
        raise ValueError(f"staging name {name!r} equals the target's")
    return name


def kept_name(database: str, moment: datetime, attempt: int = 0, avoid: tuple[str, ...] = ()) -> str:
    """Given the target database, the swap's moment and a retry number, return the name the
    previous database is kept under (at most 63 bytes), never the target's nor one in `avoid`."""
    while True:
        suffix = f"_before_{moment:%Y%m%d%H%M%S}" + (f"_{attempt}" if attempt else "")
        name = _with_suffix(database, suffix)
        if name != database and name not in avoid:
            return name
        attempt += 1


def shell_safe_path(value: str | Path, parameter: str) -> str:
    """Given a path that reaches a string a tool runs through a shell, return it absolute.

    Raise ValueError naming `parameter` when it holds anything but letters, digits and ._/+-
    (no spaces, quotes, $, `, \\, %, commas or newlines).
    """
    text = str(value)
    absolute = str(Path(text).absolute()) if text and "\x00" not in text else text
    if not _SAFE_PATH.fullmatch(absolute):
        raise ValueError(f"{parameter} {text!r} holds characters a shell or PostgreSQL would interpret: "
                         "use only letters, digits and . _ / + -")
    return absolute


def setting_option(name: str, value: str) -> str:
    """Given a server setting, return `-c name=value` quoted for the shell pg_ctl passes -o through.
    Raise ValueError naming the setting when its name or value holds anything unsafe."""
    if not _SETTING_NAME.fullmatch(name):
        raise ValueError(f"setting name {name!r} is not a PostgreSQL parameter name")
    if not _SETTING_VALUE.fullmatch(value):
        raise ValueError(f"setting {name} value {value!r} holds characters a shell would interpret")
    return "-c " + shlex.quote(f"{name}={value}")


def restore_command(wal_dir: str | Path) -> str:
    """Given the folder of staged WAL, return a restore_command that copies from it (PostgreSQL runs
    it through a shell). Raise ValueError when the folder's path is not shell-safe."""
    folder = shell_safe_path(wal_dir, "WAL staging folder")
    return f"cp {shlex.quote(folder + '/')}%f %p"

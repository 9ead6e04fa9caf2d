"""GnuPG: encrypt and decrypt backup streams, and check that a key decrypts.

Each session runs gpg in a throwaway GNUPGHOME, so nothing lands in an operator's
keyring and a private key given for a restore does not outlive the restore. The
passphrase reaches gpg through --passphrase-fd (a pipe), never argv or disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from ubertruck_ops.tasks.execute import CommandFailed, Stage, ToolMissing, require_tool, run, secret_fd

GPG_INSTALL = "apt-get install -y gnupg"
HOME_PREFIX = "ubertruck-gnupg-"
# The largest passphrase-stretching count OpenPGP can encode. Without it, gpg asks a fresh
# gpg-agent, which calibrated for ~0.8 s in every session, only to answer this same maximum
# (measured on this project's machine): one fixed stall that made a small incremental 3x slower.
S2K_COUNT = 65011712
ZSTD_INSTALL = "apt-get install -y zstd"


if TYPE_CHECKING:
    from pydantic import SecretStr


class KeyMaterial(Protocol):
    """What a gpg session reads of its keys: a BackupEncryption block, or the plain EncryptionKeys
    (blocks/plain.py) of a process that does not import Prefect."""

    passphrase: SecretStr | None
    recipients: Sequence[str]
    public_keys: str | None
    private_key: SecretStr | None
    private_key_passphrase: SecretStr | None


class DecryptionKeyError(RuntimeError):
    """The configured key cannot decrypt the backup (wrong passphrase, missing private key)."""


class GpgSession:
    """gpg commands bound to one temporary GNUPGHOME and one encryption block (or its plain keys)."""

    def __init__(self, block: KeyMaterial, home: str):
        self.block = block
        self.home = home
        self.gpg = require_tool("gpg", GPG_INSTALL)
        self.env = {"GNUPGHOME": home}

    @property
    def secrets(self) -> list[str]:
        values = [self.block.passphrase, self.block.private_key, self.block.private_key_passphrase]
        return [v.get_secret_value() for v in values if v is not None]

    def _base(self) -> list[str]:
        return [self.gpg, "--batch", "--no-tty", "--quiet", "--no-symkey-cache", "--pinentry-mode", "loopback"]

    def encrypt_stage(self) -> Stage:
        """Return the pipeline stage that encrypts stdin to stdout: AES256, gpg's compression off
        (zstd already compressed; compressing twice only costs CPU)."""
        argv = self._base() + ["--cipher-algo", "AES256", "--compress-algo", "none"]
        if self.block.passphrase is not None:
            fd = secret_fd(self.block.passphrase.get_secret_value())
            argv += ["--passphrase-fd", str(fd), "--s2k-digest-algo", "SHA512", "--s2k-count", str(S2K_COUNT),
                     "--symmetric"]
            return Stage("gpg --symmetric", argv + ["--output", "-"], self.env, pass_fds=(fd,), secrets=self.secrets)
        argv += ["--trust-model", "always", "--encrypt"]
        for recipient in self.block.recipients:
            argv += ["--recipient", recipient]
        return Stage("gpg --encrypt", argv + ["--output", "-"], self.env, secrets=self.secrets)

    def decrypt_stage(self) -> Stage:
        """Return the pipeline stage that decrypts stdin to stdout."""
        argv = self._base()
        secret = self.block.passphrase or self.block.private_key_passphrase
        fds: tuple[int, ...] = ()
        if secret is not None:
            fd = secret_fd(secret.get_secret_value())
            argv += ["--passphrase-fd", str(fd)]
            fds = (fd,)
        return Stage("gpg --decrypt", argv + ["--decrypt", "--output", "-"], self.env, pass_fds=fds,
                     secrets=self.secrets)

    def version(self) -> str:
        return run([self.gpg, "--version"], timeout=30).stdout.decode().splitlines()[0]


@contextmanager
def gpg_session(block: KeyMaterial, for_restore: bool = False) -> Iterator[GpgSession]:
    """Yield a GpgSession in a fresh GNUPGHOME holding the block's keys; remove it afterwards.

    Raise DecryptionKeyError when public keys or the private key cannot be imported.
    """
    remove_stale_homes()
    home = tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-")
    session = GpgSession(block, home)
    try:
        if block.public_keys:
            _import(session, block.public_keys.encode(), "the recipients' public keys (BACKUP_GPG_PUBLIC_KEYS)")
        if for_restore and block.private_key is not None:
            _import(session, block.private_key.get_secret_value().encode(), "the private key (BACKUP_GPG_PRIVATE_KEY)")
        yield session
    finally:
        _remove_home(home)


def _remove_home(home: str) -> None:
    # gpg starts an agent per home; stop it so no process outlives the session.
    gpgconf = shutil.which("gpgconf")
    if gpgconf:
        try:
            run([gpgconf, "--kill", "gpg-agent"], env={"GNUPGHOME": home}, timeout=30)
        except (OSError, CommandFailed, ToolMissing):
            pass     # no agent, or one already gone: the folder goes either way
    shutil.rmtree(home, ignore_errors=True)


def remove_stale_homes(folder: str | None = None) -> list[str]:
    """Remove the GNUPGHOMEs (and stop the gpg-agents) left by sessions whose process is dead - a
    run killed by SIGKILL never reaches its clean-up. Only ours: named ubertruck-gnupg-<pid>-*, owned
    by this user, a real folder, and that pid is not running. Return the folders removed."""
    base = folder or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(HOME_PREFIX):
            continue
        pid_text = entry.name[len(HOME_PREFIX):].partition("-")[0]
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not pid_text.isdigit() or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() \
                or _alive(int(pid_text)):
            continue
        _remove_home(entry.path)
        removed.append(entry.path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _import(session: GpgSession, material: bytes, what: str) -> None:
    try:
        run(session._base() + ["--import"], env=session.env, input=material, timeout=60, secrets=session.secrets)
    except Exception as exc:  # noqa: BLE001 - reworded for the operator
        raise DecryptionKeyError(f"could not import {what}: {exc}") from None


def explain_decrypt_failure(stderr: str, block: KeyMaterial) -> str:
    """Given gpg's stderr from a failed decrypt, return what the operator should do."""
    text = stderr.lower()
    if "no secret key" in text:
        return ("the private key for this backup's recipients is not available: give the restore host "
                "BACKUP_GPG_PRIVATE_KEY (the backup host holds only public keys)")
    if "bad session key" in text or "bad passphrase" in text or "decryption failed" in text:
        if block.passphrase is not None:
            return "the passphrase (BACKUP_ENCRYPTION_KEY) does not decrypt this backup"
        return "the private key's passphrase is wrong or the key does not match this backup"
    return "gpg could not decrypt the object: " + stderr.strip()[-500:]


def zstd_compress_stage(threads: int = 2) -> Stage:
    """Level 1: at these speeds zstd is never the bottleneck and still shrinks dumps 3-5x."""
    return Stage("zstd", [require_tool("zstd", ZSTD_INSTALL), "-1", f"-T{threads}", "-q", "-c"])


def zstd_decompress_stage() -> Stage:
    return Stage("zstd -d", [require_tool("zstd", ZSTD_INSTALL), "-d", "-q", "-c"])


def zstd_version() -> str:
    return run([require_tool("zstd", ZSTD_INSTALL), "--version"], timeout=30).stdout.decode().strip()

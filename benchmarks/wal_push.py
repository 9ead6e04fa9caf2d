"""Benchmark: archiving one WAL segment (`ubertruck-ops wal-push`'s work), with the pinned S2K count
and, in the same run, the way it ran before: gpg asking a fresh gpg-agent to calibrate the count.

Every push opens its own gpg session (a throwaway GNUPGHOME, so a fresh agent), because
archive_command runs one process per segment. The segment is 16 MiB, a quarter random bytes
and the rest zeros (WAL compresses between the two). The repository is a local folder.
Prints the median and the spread of --segments pushes each way, and the WAL throughput that
one archiver keeps up with. Exit status 0 whatever the figures.

    .venv/bin/python benchmarks/wal_push.py [--segments 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SEGMENT = 16 << 20


def pushes(env, repo, folder: Path, prefix: str, count: int) -> list[float]:
    from ubertruck_ops.tasks import wal
    data = os.urandom(SEGMENT // 4) + bytes(SEGMENT - SEGMENT // 4)
    walls = []
    for index in range(count):
        path = folder / f"00000001000000{prefix}{index:08X}"  # a WAL file name: 24 hex digits
        path.write_bytes(data)
        clock = time.monotonic()
        outcome = wal.push_segment(env, str(path), repo)
        walls.append(time.monotonic() - clock)
        if outcome != "archived":
            raise RuntimeError(f"{path.name}: {outcome}")
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=7, help="segments pushed each way (default 7)")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from pydantic import SecretStr
    from ubertruck_ops.blocks.encryption import BackupEncryption
    from ubertruck_ops.blocks.repository import BackupRepository
    from ubertruck_ops.tasks import crypto
    from ubertruck_ops.tasks.repository import open_repository

    class Env:  # push_segment reads only the encryption block
        encryption = BackupEncryption(passphrase=SecretStr(os.urandom(24).hex()))

    root = Path(tempfile.mkdtemp(prefix="ubertruck-bench-wal-"))
    try:
        repo = open_repository(BackupRepository(url=str(root / "repository")))
        pinned = pushes(Env, repo, root, "AA", args.segments)
        pinned_stage = crypto.GpgSession.encrypt_stage

        def calibrated_stage(self):  # the argv before the pin: no --s2k-count
            stage = pinned_stage(self)
            argv = list(stage.argv)
            del argv[argv.index("--s2k-count"):argv.index("--s2k-count") + 2]
            return crypto.Stage(stage.name, argv, stage.env, pass_fds=stage.pass_fds, secrets=stage.secrets)

        crypto.GpgSession.encrypt_stage = calibrated_stage
        try:
            calibrated = pushes(Env, repo, root, "BB", args.segments)
        finally:
            crypto.GpgSession.encrypt_stage = pinned_stage
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("| wal-push of one 16 MiB segment | median | runs | WAL one archiver keeps up with |")
    print("|---|---:|---|---:|")
    for label, walls in (("S2K count pinned (now)", pinned), ("gpg-agent calibrates (before)", calibrated)):
        median = statistics.median(walls)
        print(f"| {label} | {median:.3f} s | {min(walls):.3f}-{max(walls):.3f} s | {SEGMENT / median / 2**20:.0f} MiB/s |")
    print(f"\n{statistics.median(calibrated) / statistics.median(pinned):.1f}x faster per segment")
    return 0


if __name__ == "__main__":
    sys.exit(main())

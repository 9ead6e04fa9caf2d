"""Benchmark: `ubertruck-ops wal-push` (PostgreSQL's archive_command) as whole processes, one per 16 MiB
segment, against a Prefect server this script starts; and in the same run the way it ran before
(each push started a private Prefect API to read two blocks), and the start-up of `ubertruck-ops run`
with and without PREFECT_API_URL.

- Server: serve's own on 127.0.0.1 (deployments/api.start_local_server: basic auth, a
  temporary PREFECT_HOME), the environment's blocks saved into it, a local repository.
- Now: --rounds wal-push processes with PREFECT_API_URL and PREFECT_API_AUTH_STRING set.
- Before: --baseline-rounds wal-push processes of the code before the change (`git archive` of the
  commit before tasks/wal_push.py appeared, run from a temporary folder) without PREFECT_API_URL, on
  the same PREFECT_HOME: each starts its private API on the same SQLite database.
- `run` start-up: `ubertruck-ops run nightly-backup --param environment=<missing>` (fails as soon as
  the flow loads its blocks): with PREFECT_API_URL, and without it (the private API).
- With --compare-ref REF: as many wal-push processes of REF's code (`git archive`, PYTHONPATH),
  interleaved with the ones now, on the same server; and the cost of the check of who holds the
  API's address (tasks/api_identity.check_connection) in this process, median of 200 connections.

Segments are a quarter random bytes and the rest zeros (WAL compresses between the two). Prints
median, min and max wall per process, and the WAL throughput one archiver keeps up with (16 MiB over
the median). Exit status 0 whatever the figures.

    .venv/bin/python benchmarks/wal_push.py [--rounds 9] [--baseline-rounds 3] [--run-rounds 3] [--compare-ref REF]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SEGMENT = 16 << 20
ROOT = Path(__file__).resolve().parent.parent
COMMAND = ROOT / ".venv" / "bin" / "ubertruck-ops"
ENVIRONMENT = "bench"


def segment(folder: Path, number: int) -> Path:
    path = folder / f"00000001000000AA{number:08X}"     # a WAL file name: 24 hex digits
    path.write_bytes(os.urandom(SEGMENT // 4) + bytes(SEGMENT - SEGMENT // 4))
    return path


def timed(argv: list[str], env: dict, cwd: Path | None = None, expect: int | None = 0) -> float:
    clock = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - clock
    if expect is not None and done.returncode != expect:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    return wall


def baseline_tree(folder: Path) -> tuple[Path, str]:
    """Extract ubertruck_ops/ as it was before the change into `folder`; return it and the commit."""
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
                            "ubertruck_ops/tasks/wal_push.py"], capture_output=True, text=True, check=True)
    first = added.stdout.split()[-1]
    return tree_at(f"{first}~1", folder), f"{first[:7]}~1"


def tree_at(ref: str, folder: Path) -> Path:
    """Extract ubertruck_ops/ as it is at git `ref` into `folder`; return `folder`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "ubertruck_ops"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def check_cost(api: str, rounds: int = 200) -> list[float]:
    """Seconds one check of who holds `api`'s address takes (connect excluded), `rounds` times."""
    import socket
    from urllib.parse import urlsplit

    from ubertruck_ops.tasks.api_identity import check_connection, trusted_users

    trusted, address = trusted_users(), urlsplit(api)
    walls = []
    for _ in range(rounds):
        with socket.create_connection((address.hostname, address.port)) as sock:
            clock = time.perf_counter()
            check_connection(sock, api, trusted)
            walls.append(time.perf_counter() - clock)
    return walls


def save_blocks(api: str, auth: str, repository: Path) -> None:
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from pydantic import SecretStr

    from ubertruck_ops.blocks.archive import ArchiveSources
    from ubertruck_ops.blocks.database import PostgresDatabase
    from ubertruck_ops.blocks.encryption import BackupEncryption
    from ubertruck_ops.blocks.environment import Environment, save_environment
    from ubertruck_ops.blocks.repository import BackupRepository
    from ubertruck_ops.blocks.slack import SlackNotices

    env = Environment(database=PostgresDatabase(database="d", user="u"),
                      encryption=BackupEncryption(passphrase=SecretStr(os.urandom(24).hex())),
                      repository=BackupRepository(url=str(repository)), slack=SlackNotices(),
                      archive=ArchiveSources(app_root=None))
    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
        save_environment(env, ENVIRONMENT)


def row(label: str, walls: list[float], throughput: bool = True) -> str:
    median = statistics.median(walls)
    rate = f"{SEGMENT / median / 2**20:.1f} MiB/s" if throughput else "-"
    return f"| {label} | {median:.2f} s | {min(walls):.2f} s | {max(walls):.2f} s | {len(walls)} | {rate} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="wal-push processes now (default 9)")
    parser.add_argument("--baseline-rounds", type=int, default=3, help="wal-push processes before (default 3)")
    parser.add_argument("--run-rounds", type=int, default=3, help="`run` start-ups each way (default 3)")
    parser.add_argument("--compare-ref", help="also time wal-push of this git ref's code, interleaved")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ubertruck-bench-wal-"))
    home = root / "prefect"
    os.environ.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING")
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_API_KEY"):
        os.environ.pop(name, None)
    from ubertruck_ops.deployments.api import api_auth_string, start_local_server
    from ubertruck_ops.tasks.execute import stop
    from ubertruck_ops.tasks.scratch_postgres import free_port

    process = None
    try:
        auth = api_auth_string()
        clock = time.monotonic()
        process, api = start_local_server("127.0.0.1", free_port(), auth)
        server_start = time.monotonic() - clock
        save_blocks(api, auth, root / "repository")
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        with_api = {**base, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": auth}
        number = 0

        def push(env: dict, argv_head: list[str], cwd: Path | None = None) -> float:
            nonlocal number
            number += 1
            path = segment(root, number)
            try:
                return timed(argv_head + ["wal-push", str(path), "--environment", ENVIRONMENT], env, cwd)
            finally:
                path.unlink()

        now, then = [], []
        ref_env = {**with_api, "PYTHONPATH": str(tree_at(args.compare_ref, root / "ref"))} if args.compare_ref else None
        for _ in range(args.rounds):
            now.append(push(with_api, [str(COMMAND)]))
            if ref_env:
                then.append(push(ref_env, [str(COMMAND)]))
        checks = check_cost(api) if args.compare_ref else []
        old_tree, old_rev = baseline_tree(root / "before")
        old_env = {**base, "PYTHONPATH": str(old_tree)}
        before = [push(old_env, [sys.executable, "-m", "ubertruck_ops.deployments.cli"], cwd=old_tree)
                  for _ in range(args.baseline_rounds)]
        run_argv = [str(COMMAND), "run", "nightly-backup", "--param", "environment=bench-missing"]
        run_api = [timed(run_argv, with_api, expect=1) for _ in range(args.run_rounds)]
        run_private = [timed(run_argv, base, expect=1) for _ in range(args.run_rounds)]
        archived = len(list((root / "repository" / "wal").glob("*.json")))
    finally:
        if process is not None:
            stop(process, timeout=30)
        shutil.rmtree(root, ignore_errors=True)

    print(f"Prefect server (serve's: on a socket we bound, basic auth) came up in {server_start:.1f} s; "
          f"{archived} segments archived; baseline code: {old_rev}\n")
    print("| whole process | median | min | max | runs | WAL one archiver keeps up with |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("`wal-push` of a 16 MiB segment, PREFECT_API_URL set (now)", now))
    if then:
        print(row(f"`wal-push` of a 16 MiB segment at {args.compare_ref}, interleaved with now", then))
    print(row("`wal-push` before: a private Prefect API per push", before))
    print(row("`run` start-up to a failed flow, PREFECT_API_URL set", run_api, throughput=False))
    print(row("`run` start-up to a failed flow, no PREFECT_API_URL (private API)", run_private, throughput=False))
    if checks:
        print(f"\ncheck of who holds the API's address: median {statistics.median(checks) * 1e3:.2f} ms "
              f"(min {min(checks) * 1e3:.2f}, max {max(checks) * 1e3:.2f}, {len(checks)} connections; "
              f"{sum(1 for table in ('/proc/net/tcp', '/proc/net/tcp6') for _ in open(table)) - 2} sockets in the table)")
    print(f"\nwal-push: {statistics.median(before) / statistics.median(now):.1f}x faster per segment; "
          f"goal <= 1.5 s per segment: {'met' if statistics.median(now) <= 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The setting the application benchmarks share: the sandbox with its application host (embedded
PostgreSQL 18, the sample application's repository, six services under a PM2 daemon of its own)
saved as environment `bench` in a throwaway Prefect API, everything under one new folder."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def prepare(prefix: str, workdir: str | None = None) -> Path:
    """A new folder (inside `workdir` when given) that holds everything; PREFECT_HOME points into it.
    Call before anything imports Prefect: its settings are read at import."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    root.chmod(0o755)   # the embedded PostgreSQL runs as an unprivileged user when we are root
    os.environ["PREFECT_HOME"] = str(root / "prefect")      # keep the operator's Prefect home untouched
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return root


@contextmanager
def sandbox_with_app(root: Path, **sandbox_options) -> Iterator:
    """Yield the sandbox's Environment (saved as `bench`) inside a Prefect API of its own with the
    concurrency limits; stop everything and remove `root` afterwards."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from ubertruck_ops.deployments.setup import ensure_concurrency_limits
    from ubertruck_ops.sandbox.environment import Sandbox

    sandbox = Sandbox(root / "sandbox", size_mb=20, with_app=True, **sandbox_options)
    try:
        with prefect_test_harness(server_startup_timeout=120), \
                temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            ensure_concurrency_limits()
            yield sandbox.start(save_as="bench")
    finally:
        sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)

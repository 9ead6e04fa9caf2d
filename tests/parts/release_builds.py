"""Each release of the sample app built for real once per test run, shared by the suite's workers.

Most tests deploy in order to switch, migrate, roll back, reconfigure or watch, not to test the
build. A real build of the TypeScript sample app (npm ci with dev dependencies, tsc, npm test,
audit and prune for seven packages) costs about 20 CPU-seconds, and the suite deploys the same few
commits dozens of times on 2 cores. So the first build of a commit in a run is a real one, through
the deploy's own build_release; it is kept here, and a later deploy of the same commit (with the
same services and audit settings) finds a copy in its host's releases folder and takes the deploy's
reuse path, as a redeploy does in production. Builds that fail are never kept: a release whose
tests fail, whose lock file is out of sync or whose audit refuses it is built for real every time.

Tests about the build itself carry the `real_builds` marker; UT_REAL_BUILDS=1 makes every test
build for real (the suite then takes longer).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.tasks import release


class SharedReleaseBuilds:
    """Complete release folders under `root`, one per (commit, services, audit settings)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.reused: list[str] = []       # tags this process took from the cache, for the tests of it

    @staticmethod
    def key(app: AppHost, commit: str) -> str:
        # What a build of the commit depends on besides its sources: which packages, which audit.
        settings = {"commit": commit, "services": sorted(app.services), "audit_level": app.audit_level,
                    "audit_registry": app.audit_registry}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]

    def build_release(self, build: Callable[[AppHost, str, str], str], app: AppHost, tag: str, commit: str) -> str:
        """Run `build` (the deploy's build_release) for `tag` at `commit` on `app`'s host, with a kept
        build of the same commit copied in first when there is one; keep the build it made when there
        is none. Other workers wanting the same build wait for it rather than build it twice."""
        kept = self.root / self.key(app, commit)
        with _locked(kept.with_suffix(".lock")):
            if kept.is_dir() and not release.release_dir(app, tag).exists():
                self._copy_in(kept, app, tag)
                self.reused.append(tag)
            built = build(app, tag, commit)
            # Only a build made under the usual umask is kept: a copy can take permissions away, not add them.
            if (not kept.is_dir() and _umask() == 0o022 and release.is_complete(app, tag)
                    and release.release_info(app, tag)["commit"] == commit):
                partial = kept.with_name(f"{kept.name}.partial-{secrets.token_hex(3)}")
                shutil.copytree(release.release_dir(app, tag), partial, symlinks=True)
                os.rename(partial, kept)
            return built

    @staticmethod
    def _copy_in(kept: Path, app: AppHost, tag: str) -> None:
        """Copy the kept build to releases/<tag>, its marker saying this tag and built now (the order
        of builds on a host is what its pruning and `releases()` go by)."""
        release.prepare_host(app)
        target = release.release_dir(app, tag)
        partial = target.with_name(f".{tag}.partial-{secrets.token_hex(3)}")
        shutil.copytree(kept, partial, symlinks=True)
        _as_if_made_under_this_umask(partial)
        marker = partial / release.MARKER
        info = json.loads(marker.read_text())
        marker.write_text(json.dumps({**info, "tag": tag, "built_at": release._now()}) + "\n")
        os.rename(partial, target)


def _as_if_made_under_this_umask(folder: Path) -> None:
    """Take from every copied file and folder the permissions the process's umask withholds, as a
    build made now would have them (a deploy under UMask=0077 keeps its release private; the kept
    build may have been made under 022)."""
    umask = _umask()
    for root, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o7777 & ~umask)
    os.chmod(folder, os.stat(folder).st_mode & 0o7777 & ~umask)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

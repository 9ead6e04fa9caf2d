"""nginx upstreams on the load-balancer host as the load balancer: the include file (rendered by
core/load_balancer.py, written atomically), nginx's own test and reload commands, and its worker
processes (read from /proc: the workers from before a reload hold the connections still draining).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ubertruck_ops.blocks.load_balancer import LoadBalancer
from ubertruck_ops.core.load_balancer import down_hosts, render_upstreams
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import execute
from ubertruck_ops.tasks.balancers import LoadBalancerError


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, text: str | None) -> None:
    """Replace `path` with `text` (None: remove it) in one rename, keeping its mode and owner: nginx
    never reads half a file, and a crash leaves the old or the new one."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    try:
        old = path.stat()
        mode, owner = old.st_mode & 0o777, (old.st_uid, old.st_gid)
    except FileNotFoundError:
        mode, owner = 0o644, None     # nginx's master (often root) and its test run read it; it holds no secret
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if owner and os.geteuid() == 0:
            os.chown(temp, *owner)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _master_pid(lb: LoadBalancer) -> int | None:
    if not lb.pid_file:
        return None
    try:
        pid = int(Path(lb.pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:       # alive, owned by another user: its /proc entries are still readable
        return pid
    except OSError:
        return None
    return pid


def _workers(master: int) -> set[int]:
    """Return the pids whose parent is `master` (nginx's workers, old and new), from /proc."""
    children = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            children.add(int(entry.name))
    return children


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _apply(lb: LoadBalancer, down: set[str], drain: bool) -> dict:
    """Render the upstreams with `down` out, and when the file changes: write it, test it, reload,
    and (when `drain`) wait for the workers from before the reload to exit. Return what was measured."""
    path = Path(lb.upstreams_file)
    before = _read(path)
    text = render_upstreams(lb.upstreams, down, lb.upstream_directives)
    if text == before:
        return {"changed": False, "seconds_waited": 0.0, "old_workers": None}
    _write_atomically(path, text)
    master = _master_pid(lb)
    old = _workers(master) if master else set()
    try:
        if lb.test_command:
            execute.run(lb.test_command, timeout=60)
        started = time.monotonic()
        execute.run(lb.reload_command, timeout=60)
    except BaseException:
        # What nginx runs and what the file says must agree: put the old file back.
        _write_atomically(path, before)
        raise
    logger().info("%s rewritten with %s down; nginx reloaded", path, sorted(down) or "no host")
    result: dict[str, Any] = {"changed": True, "old_workers": sorted(old) if master else None}
    if not drain:
        result["seconds_waited"] = 0.0
        return result
    workers_gone = None
    while True:
        waited = time.monotonic() - started
        remaining = _alive(old)
        if not remaining and workers_gone is None:
            workers_gone = waited
        if workers_gone is not None and waited >= lb.drain_seconds:
            break
        if waited >= lb.drain_timeout_seconds:
            raise LoadBalancerError(f"nginx's workers from before the reload (pids {sorted(remaining)}) still hold "
                                    f"connections after {lb.drain_timeout_seconds:.0f} s (or the reload did not take "
                                    "effect: see nginx's error log)")
        # /proc is cheap to read: watch the old workers closely, so the measured drain is close to the real one.
        time.sleep(0.2 if remaining else max(0.0, min(lb.poll_seconds, lb.drain_seconds - waited)))
    result.update(seconds_waited=round(time.monotonic() - started, 3),
                  old_workers_exited_after=round(workers_gone, 3) if master else None)
    return result


def _down(lb: LoadBalancer) -> set[str] | None:
    text = _read(Path(lb.upstreams_file))
    return None if text is None else down_hosts(text, lb.upstreams)


def deregister(lb: LoadBalancer, host: str) -> dict:
    """Mark `host` down in the upstreams, reload nginx and wait for the workers from before to drain."""
    targets = lb.targets_of(host)
    down = (_down(lb) or set()) | {host}
    return {"host": host, "kind": "nginx", "targets": targets, "down": sorted(down), **_apply(lb, down, drain=True)}


def register(lb: LoadBalancer, host: str) -> dict:
    """Mark `host` up in the upstreams and reload nginx (no drain to wait for)."""
    targets = lb.targets_of(host)
    down = (_down(lb) or set()) - {host}
    return {"host": host, "kind": "nginx", "targets": targets, "down": sorted(down), **_apply(lb, down, drain=False)}


def state(lb: LoadBalancer) -> dict:
    """Return which hosts the upstreams file marks down, whether it exists, and nginx's master pid."""
    down = _down(lb)
    return {"kind": "nginx", "file": lb.upstreams_file, "file_present": down is not None,
            "hosts": {host: "out" if host in (down or set()) else "in" for host in lb.host_names},
            "master_pid": _master_pid(lb)}

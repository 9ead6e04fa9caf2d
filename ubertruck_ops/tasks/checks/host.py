"""Checks on the host: disk, CPU, memory, new lines in the services' error logs, log rotation,
failed logins in the auth log, pending package updates."""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from pathlib import Path
from stat import S_ISREG

import psutil

from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.tasks.execute import run


def disk(path: str, limits: CheckThresholds) -> CheckResult:
    usage = psutil.disk_usage(path)
    return checks.disk(f"disk {path}", usage.percent, limits.disk_free_critical_pct, limits.disk_used_low_pct)


def disk_bytes(path: str) -> tuple[int, int]:
    """Return (used, total) bytes of the file system holding `path`."""
    usage = psutil.disk_usage(path)
    return usage.used, usage.total


def cpu(limits: CheckThresholds) -> CheckResult:
    percent = psutil.cpu_percent(interval=1.0)
    return checks.above("cpu", percent, [(limits.cpu_high_pct, checks.WARN, "high"),
                                         (limits.cpu_medium_pct, checks.WARN, "medium")], "%",
                        f"{percent:.0f}% over 1 s, load {os.getloadavg()[0]:.2f}")


def memory(limits: CheckThresholds) -> CheckResult:
    percent = psutil.virtual_memory().percent
    return checks.above("memory", percent, [(limits.memory_high_pct, checks.WARN, "high")], "%", f"{percent:.0f}% used")


def new_error_lines(log_dir: str, offsets: dict[str, list]) -> tuple[CheckResult, dict]:
    """Lines added to <log_dir>/*-error.log since `offsets` ({file: [inode, size]}, from the last
    run); return the result (medium when there are any) and the offsets to remember. A file
    that was rotated (new inode) or truncated is read from its start.

    Only regular files are read, opened without following a symbolic link: whoever can write the
    log folder could otherwise plant `x-error.log -> /etc/shadow` and have its last line posted
    to Slack. What was refused is said (a warning), and nothing of it is read."""
    folder = Path(log_dir)
    if not folder.is_dir():
        return checks.error("error logs", f"log folder {log_dir} does not exist"), offsets
    new_offsets, counts, samples, refused = {}, {}, [], []
    for path in sorted(folder.glob("*-error.log")):
        try:
            # O_NONBLOCK: a FIFO planted under the name must not hang the checklist before fstat refuses it.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            refused.append(f"{path.name} ({'a symbolic link' if exc.errno == errno.ELOOP else exc.strerror})")
            continue
        with os.fdopen(fd, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if not S_ISREG(stat.st_mode):
                refused.append(f"{path.name} (not a regular file)")
                continue
            inode, start = offsets.get(path.name, [None, 0])
            if inode != stat.st_ino or start > stat.st_size:
                start = 0
            handle.seek(start)
            chunk = handle.read(stat.st_size - start)
        lines = [line for line in chunk.decode(errors="replace").splitlines() if line.strip()]
        new_offsets[path.name] = [stat.st_ino, start + len(chunk)]
        if lines:
            counts[path.name] = len(lines)
            samples.append(f"{path.name}: {lines[-1].strip()[:120]}")
    total = sum(counts.values())
    not_read = (f"not read (only regular files, never through a link): {', '.join(refused[:5])}"
                if refused else "")
    if total:
        detail = "; ".join([f"{total} new line(s): " + "; ".join(samples[:3])] + ([not_read] if not_read else []))
        return checks.warn("error logs", total, "0 new lines", detail, "medium"), new_offsets
    if refused:
        return checks.warn("error logs", len(refused), "only regular files", not_read, "medium"), new_offsets
    return checks.ok("error logs", 0, "0 new lines", f"no new lines in {len(new_offsets)} error log(s)"), new_offsets


def log_rotation(log_dir: str, limits: CheckThresholds) -> CheckResult:
    """Every log file in `log_dir` within the size and age limits (low priority otherwise)."""
    folder = Path(log_dir)
    if not folder.is_dir():
        return checks.error("log rotation", f"log folder {log_dir} does not exist")
    problems = []
    now = time.time()
    files = [p for p in folder.iterdir() if p.is_file()]
    for path in files:
        stat = path.stat()
        size_mb, age_days = stat.st_size / 1e6, (now - stat.st_mtime) / 86400
        if size_mb > limits.log_max_size_mb:
            problems.append(f"{path.name} {size_mb:.0f} MB")
        if age_days > limits.log_max_age_days:
            problems.append(f"{path.name} untouched {age_days:.0f} days")
    if problems:
        return checks.warn("log rotation", len(problems),
                           f"<= {limits.log_max_size_mb} MB, <= {limits.log_max_age_days} days",
                           "not rotated: " + ", ".join(problems[:5]), "low")
    return checks.ok("log rotation", len(files), f"<= {limits.log_max_size_mb} MB",
                     f"{len(files)} file(s) within size and age limits")


_FAILED_LOGIN = re.compile(r"Failed password|authentication failure|Invalid user")


def failed_logins_in_auth_log(path: str, limits: CheckThresholds) -> CheckResult:
    """Failed logins in the auth log (high above the threshold); error when it cannot be read."""
    try:
        with open(path, errors="replace") as handle:
            count = sum(1 for line in handle if _FAILED_LOGIN.search(line))
    except OSError as exc:
        return checks.error("auth log failed logins", f"cannot read {path}: {exc.strerror}")
    return checks.above("auth log failed logins", count, [(limits.failed_logins_high, checks.WARN, "high")], "",
                        f"{count} failed login line(s) in {path}")


def pending_updates() -> CheckResult:
    """Packages apt would upgrade (low priority), security ones named; error without apt."""
    apt = shutil.which("apt-get")
    if apt is None:
        return checks.error("pending updates", "apt-get is not available on this host")
    out = run([apt, "-s", "-q", "upgrade"], timeout=120).stdout.decode(errors="replace")
    upgrades = [line.split()[1] for line in out.splitlines() if line.startswith("Inst ")]
    security = [line.split()[1] for line in out.splitlines() if line.startswith("Inst ") and "security" in line.lower()]
    if upgrades:
        return checks.warn("pending updates", len(upgrades), "0",
                           f"{len(upgrades)} package(s), {len(security)} security: {', '.join((security or upgrades)[:8])}",
                           "low")
    return checks.ok("pending updates", 0, "0", "system packages up to date")

"""The one place that starts subprocesses.

Every command is logged with secrets masked, runs with a timeout and a minimal
environment (so a secret exported in the operator's shell does not leak into tools
that do not need it), and a non-zero exit becomes a `CommandFailed` carrying the
tool's stderr. Secrets reach children through environment variables or inherited
file descriptors, never argv: `/proc/<pid>/cmdline` is readable by every local user.
"""

from __future__ import annotations

import collections
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ubertruck_ops.log import logger

_BASE_ENV_NAMES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")
MASK = "********"


class CommandFailed(RuntimeError):
    """A command exited non-zero, was killed, or timed out."""

    def __init__(self, command: str, returncode: int | None, stderr: str, reason: str = "", stdout: str = ""):
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout         # what it printed there (a test runner's report), masked like stderr
        status = reason or (f"killed by signal {-returncode}" if returncode and returncode < 0 else f"exit status {returncode}")
        tail = stderr.strip()[-2000:]
        super().__init__(f"{command} failed ({status})" + (f": {tail}" if tail else ""))


class ToolMissing(RuntimeError):
    """A program the operation needs is not installed."""


def mask(text: str, secrets: Iterable[str]) -> str:
    """Given text and secret values, return the text with every secret replaced by a mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def display(argv: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """Return argv as a shell-quoted line with secrets masked, for logs and errors."""
    return mask(shlex.join(str(a) for a in argv), list(secrets))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the minimal environment for a child process plus `extra`."""
    env = {name: os.environ[name] for name in _BASE_ENV_NAMES if name in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra or {})
    return env


def require_tool(name: str, install_hint: str) -> str:
    """Return the path of program `name`. Raise ToolMissing naming the install command when absent."""
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"'{name}' is not installed or not on PATH; install it with: {install_hint}")
    return path


def secret_fd(secret: str) -> int:
    """Return the read end of a pipe holding `secret`, for a child's --passphrase-fd.

    The pipe buffer (64 KiB) holds any passphrase, so the write never blocks.
    """
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, secret.encode())
    finally:
        os.close(write_end)
    return read_end


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
    cwd: str | os.PathLike | None = None,
    user: str | None = None,
    group: str | None = None,
    secrets: Iterable[str] = (),
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess:
    """Run argv to completion and return its CompletedProcess (bytes output).

    With `user` (root only) the child runs as that user; with `group` also as that group and
    without our supplementary groups, so it keeps none of root's.
    Raise CommandFailed with the tool's stderr on a non-zero exit or a timeout.
    """
    identity: dict = {"user": user} if user else {}
    if group:
        identity.update(group=group, extra_groups=[])
    secrets = list(secrets)
    shown = display(argv, secrets)
    logger().debug("running: %s", shown)
    try:
        proc = subprocess.run(
            list(map(str, argv)), env=child_env(env), input=input, capture_output=True,
            timeout=timeout, cwd=cwd, pass_fds=tuple(pass_fds), **identity,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(shown, None, mask((exc.stderr or b"").decode(errors="replace"), secrets),
                            reason=f"timed out after {timeout:.0f} s") from None
    except FileNotFoundError:
        raise ToolMissing(f"'{argv[0]}' is not installed or not on PATH") from None
    finally:
        for fd in pass_fds:
            _close_quietly(fd)
    if proc.returncode != 0:
        raise CommandFailed(shown, proc.returncode, mask(proc.stderr.decode(errors="replace"), secrets),
                            stdout=mask(proc.stdout.decode(errors="replace"), secrets))
    return proc


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          secrets: Iterable[str] = (), die_with_parent: bool = False, death_signal: int = signal.SIGTERM,
          user: str | None = None, group: str | None = None,
          output: str | os.PathLike | None = None, pass_fds: Sequence[int] = (),
          on_stderr_line: Callable[[str], None] | None = None) -> subprocess.Popen:
    """Start a long-running helper and return it; the caller stops it.

    `die_with_parent`: the kernel sends the helper `death_signal` (SIGTERM unless given) when this
    process dies, even by SIGKILL (Linux PR_SET_PDEATHSIG; it fires when the calling thread ends, so
    call it from the main thread). The helper also gets a session of its own: a signal to our
    process group (Ctrl-C, systemd's stop) reaches only us, and we stop the helper once we are done
    with it. `user`/`group` as for `run`. `output`: a file (created 0600) that gets the helper's
    stdout and stderr, appended; else they are discarded, except that with `on_stderr_line` each
    line of its stderr goes there (secrets masked). `pass_fds`: descriptors the helper inherits
    (e.g. a listening socket we bound for it); the caller keeps its own copies.
    """
    if output is not None and on_stderr_line is not None:
        raise ValueError("spawn: give output or on_stderr_line, not both")
    secrets = list(secrets)
    identity: dict = {"user": user} if user else {}
    if group:
        identity.update(group=group, extra_groups=[])
    logger().info("starting %s: %s", name, display(argv, secrets))
    sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600) if output else None
    stderr = sink if sink is not None else subprocess.PIPE if on_stderr_line else subprocess.DEVNULL
    try:
        process = subprocess.Popen(list(map(str, argv)), env=child_env(env), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL if sink is None else sink, stderr=stderr,
                                   pass_fds=tuple(pass_fds),
                                   preexec_fn=_die_with_parent(death_signal) if die_with_parent else None,
                                   **identity)
    except FileNotFoundError:
        raise ToolMissing(f"'{argv[0]}' is not installed or not on PATH") from None
    finally:
        if sink is not None:
            os.close(sink)
    if on_stderr_line is not None:
        threading.Thread(target=_drain, args=(process.stderr, collections.deque(maxlen=1),
                                              lambda line: on_stderr_line(mask(line, secrets))), daemon=True).start()
    return process


def stop(process: subprocess.Popen | None, timeout: float = 10) -> int | None:
    """Stop a helper started by `spawn`: SIGTERM, wait up to `timeout` seconds, then SIGKILL and reap
    it. Return its exit status (None when there was no process). A helper already gone is fine."""
    if process is None:
        return None
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            logger().warning("pid %s did not stop within %.0f s of SIGTERM; killing it", process.pid, timeout)
            try:
                process.kill()
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
    return process.returncode


def _die_with_parent(death_signal: int = signal.SIGTERM) -> Callable[[], None]:
    """Return a preexec hook that asks for `death_signal` when the parent dies (resolved before the
    fork, so the child only makes the system call). It runs after a change of user (Popen's order),
    which would otherwise clear the request."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        os.setsid()
        prctl(1, death_signal)          # PR_SET_PDEATHSIG
        if os.getppid() != parent:      # the parent died before the request took effect
            os._exit(1)
    return hook


@dataclass
class Stage:
    """One command of a pipeline."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    pass_fds: Sequence[int] = ()
    secrets: Sequence[str] = ()
    on_stderr_line: Callable[[str], None] | None = None


class Pipeline:
    """Commands chained stdout to stdin, for streams too large to hold (dumps, archives).

    The caller writes the first stage's stdin (when `feed_stdin`) and/or reads the last
    stage's stdout. Use as a context manager: leaving it by an exception kills every stage,
    so an aborted backup leaves no pg_dump running against production.
    """

    def __init__(self, stages: Sequence[Stage], *, feed_stdin: bool = False, stdout=subprocess.PIPE,
                 cwd: str | os.PathLike | None = None):
        self.stages = list(stages)
        self.procs: list[subprocess.Popen] = []
        self._stderr: list[collections.deque] = []
        self._threads: list[threading.Thread] = []
        previous = subprocess.PIPE if feed_stdin else subprocess.DEVNULL
        try:
            for index, stage in enumerate(self.stages):
                last = index == len(self.stages) - 1
                logger().info("starting %s: %s", stage.name, display(stage.argv, stage.secrets))
                try:
                    proc = subprocess.Popen(
                        list(map(str, stage.argv)), stdin=previous, stdout=stdout if last else subprocess.PIPE,
                        stderr=subprocess.PIPE, env=child_env(stage.env), pass_fds=tuple(stage.pass_fds), cwd=cwd,
                    )
                except FileNotFoundError:
                    raise ToolMissing(f"'{stage.argv[0]}' is not installed or not on PATH") from None
                finally:
                    for fd in stage.pass_fds:
                        _close_quietly(fd)
                if self.procs and self.procs[-1].stdout is not None:
                    # The parent's copy must go, or the upstream never sees SIGPIPE.
                    self.procs[-1].stdout.close()
                self.procs.append(proc)
                previous = proc.stdout if not last else None
                lines: collections.deque = collections.deque(maxlen=200)
                self._stderr.append(lines)
                thread = threading.Thread(target=_drain, args=(proc.stderr, lines, stage.on_stderr_line), daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.kill()
            for stage in self.stages[len(self.procs) + 1:]:   # never started: their passphrase pipes must close
                for fd in stage.pass_fds:
                    _close_quietly(fd)
            raise

    @property
    def stdin(self):
        return self.procs[0].stdin

    @property
    def stdout(self):
        return self.procs[-1].stdout

    def kill(self) -> None:
        """Kill every stage still running and reap it."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def wait(self, timeout: float = 600) -> None:
        """Wait for every stage. Raise CommandFailed naming the stage that caused the failure.

        A stage killed by SIGPIPE, or complaining of a broken pipe, is a symptom of a
        failure downstream, so the first failure that is neither is the one reported.
        """
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise CommandFailed(" | ".join(s.name for s in self.stages), None, "",
                                    reason=f"timed out after {timeout:.0f} s") from None
        for thread in self._threads:
            thread.join(timeout=5)
        failures = [(stage, proc, lines) for stage, proc, lines in zip(self.stages, self.procs, self._stderr)
                    if proc.returncode != 0]
        if not failures:
            return
        real = [f for f in failures if f[1].returncode != -signal.SIGPIPE
                and not any("broken pipe" in line.lower() for line in f[2])] or failures
        stage, proc, lines = real[0]
        raise CommandFailed(stage.name, proc.returncode, mask("\n".join(lines), stage.secrets))

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.kill()
        for stream in [self.procs[0].stdin if self.procs else None, self.procs[-1].stdout if self.procs else None]:
            if stream is not None:
                _close_quietly(stream)


def _drain(stream, lines: collections.deque, on_line: Callable[[str], None] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if on_line is not None:
            try:
                on_line(line)
            except Exception:  # a progress callback must never break the stream
                pass
    stream.close()


def _close_quietly(thing) -> None:
    try:
        thing.close() if hasattr(thing, "close") else os.close(thing)
    except OSError:
        pass

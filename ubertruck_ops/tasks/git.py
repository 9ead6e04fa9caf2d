"""Git: find a release tag in the application repository and check out exactly that tag."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.core.retries import git_failure_is_transient
from ubertruck_ops.tasks.execute import CommandFailed, require_tool, run
from ubertruck_ops.tasks.retrying import network_retries

_INSTALL = "apt-get install -y git"


def _git() -> list[str]:
    # No prompt may ever wait for a human at 02:00: fail instead of asking for credentials.
    return [require_tool("git", _INSTALL), "-c", "advice.detachedHead=false", "-c", "credential.interactive=false"]


_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def remote_tags(repo_url: str) -> dict[str, str]:
    """Return tag -> commit of every tag in the repository at `repo_url`.

    Raise RuntimeError naming the repository when it cannot be read.
    """
    try:
        out = run([*_git(), "ls-remote", "--tags", repo_url], env=_ENV, timeout=120).stdout.decode()
    except CommandFailed as exc:
        raise RuntimeError(f"cannot read the application repository {repo_url}: {exc.stderr.strip()[-500:]}") from None
    tags: dict[str, str] = {}
    for line in out.splitlines():
        commit, _, ref = line.partition("\t")
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):          # the commit an annotated tag points at
            tags[name[:-3]] = commit
        else:
            tags.setdefault(name, commit)
    return tags


def transient_failure(exc: BaseException) -> bool:
    """A clone that failed because the network did (not for credentials or a missing tag)."""
    return isinstance(exc, CommandFailed) and git_failure_is_transient(exc.stderr)


# Idempotent: a failed clone leaves `destination` as it found it (git removes what it wrote).
@task(name="fetch-release", cache_policy=NO_CACHE, **network_retries(transient_failure))
def check_out(repo_url: str, tag: str, destination: Path) -> str:
    """Clone exactly `tag` of `repo_url` into `destination` (which must not exist or be empty);
    return its commit. Retried when the network failed."""
    run([*_git(), "clone", "--quiet", "--depth", "1", "--branch", tag, "--", repo_url, str(destination)],
        env=_ENV, timeout=600)
    return run([*_git(), "-C", str(destination), "rev-parse", "HEAD"], env=_ENV).stdout.decode().strip()


def commit_subjects(repo_url: str, since_tag: str | None, tag: str, limit: int = 200) -> list[str]:
    """Return the first lines of the commits in `tag` that `since_tag` lacks (newest first; without
    `since_tag` just `tag`'s own), at most `limit`. Reads history only (a blobless bare clone in a
    temporary folder). Raise RuntimeError naming the repository when it cannot be read."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ubertruck-notes-") as folder:
        try:
            run([*_git(), "clone", "--quiet", "--bare", "--filter=blob:none", "--", repo_url, folder],
                env=_ENV, timeout=300)
            span = [f"refs/tags/{tag}", f"^refs/tags/{since_tag}"] if since_tag else [f"refs/tags/{tag}", "-1"]
            out = run([*_git(), "-C", folder, "log", "--format=%s", f"--max-count={limit}", *span, "--"],
                      env=_ENV, timeout=120).stdout.decode(errors="replace")
        except CommandFailed as exc:
            raise RuntimeError(f"cannot read the history of {repo_url}: {exc.stderr.strip()[-300:]}") from None
    return [line for line in out.splitlines() if line.strip()]

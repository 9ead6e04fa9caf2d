"""Release policy: which tags are valid, what 'previous' means, what to prune, how PM2 runs
a release, and whether a health gate passed. Pure functions, tested without Prefect."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ubertruck_ops.core.app_config import service_environment

# Used with fullmatch: `$` would also accept a trailing newline.
TAG_PATTERN = re.compile(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?")


def check_tag(tag: object) -> str:
    """Given a deploy parameter, return it as a release tag. Raise ValueError unless it is vX.Y.Z[-suffix]."""
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
        raise ValueError(f"tag {tag!r} is not a release tag: expected vMAJOR.MINOR.PATCH such as v1.10.0 "
                         "(from the CLI pass it as a string: --param tag=v1.10.0)")
    return tag


def app_name(service: str, tag: str, config: int = 0) -> str:
    """Return the PM2 app name of `service` running release `tag` with configuration version `config`.

    The tag is part of the name because PM2 never changes the script path of an app on
    reload (measured on PM2 7: `pm2 reload ecosystem.config.js --update-env` keeps the old
    path), so a new release is a new app that takes over the port, then the old one goes. The
    configuration version is too (`+c3`; none for version 0): a new configuration takes over the
    same way, and PM2's list says which one each process has.
    """
    return f"{service}@{tag}" + (f"+c{config}" if config else "")


def service_of(app: str) -> str:
    """Return the service of a PM2 app name made by app_name (or the name itself)."""
    return app.rsplit("@", 1)[0]


def ecosystem_apps(services: dict[str, int], tag: str, release_dir: str, log_dir: str, instances: int,
                   config: dict[str, str] | None = None, config_version: int = 0,
                   node_env: str = "production") -> list[dict]:
    """Return PM2 ecosystem entries running release `tag` with configuration version `config_version`
    (its variables `config`) from the release's real folder (never through the `current` symlink,
    which PM2 would resolve once and keep), with source maps on for stack traces."""
    apps = []
    for service, port in services.items():
        apps.append({
            "name": app_name(service, tag, config_version),
            "namespace": service,
            "script": f"{release_dir}/{service}/dist/main.js",
            "cwd": f"{release_dir}/{service}",
            "exec_mode": "cluster",
            "instances": instances,
            "wait_ready": True,          # the app sends 'ready' once listening
            "listen_timeout": 15000,
            "kill_timeout": 8000,        # time to drain in-flight requests on SIGINT
            "max_restarts": 3,
            "min_uptime": 10000,
            "max_memory_restart": "500M",
            "autorestart": True,
            "merge_logs": True,
            "log_date_format": "YYYY-MM-DD HH:mm:ss Z",
            "out_file": f"{log_dir}/{service}-out.log",
            "error_file": f"{log_dir}/{service}-error.log",
            # Stack traces in the error log point into the TypeScript sources (the build keeps its maps).
            "node_args": ["--enable-source-maps"],
            "env": service_environment(config or {}, port, tag, node_env),
        })
    return apps


@dataclass
class HistoryEntry:
    """One line of the host's deploy history."""

    at: str
    action: str                  # deploy | rollback | auto-rollback | auto-put-back | put-back
    from_release: str | None
    to_release: str
    outcome: str                 # started | succeeded | failed | rolled-back
    flow_run: str | None = None
    detail: str = ""
    config: int = 0              # the configuration version `to_release` runs with (core/app_config.py)
    from_config: int = 0         # the one `from_release` ran with

    def to_dict(self) -> dict:
        return {"at": self.at, "action": self.action, "from": self.from_release, "to": self.to_release,
                "outcome": self.outcome, "flow_run": self.flow_run, "detail": self.detail,
                "config": self.config, "from_config": self.from_config}

    @classmethod
    def from_dict(cls, data: dict) -> HistoryEntry:
        return cls(at=data["at"], action=data["action"], from_release=data.get("from"), to_release=data["to"],
                   outcome=data["outcome"], flow_run=data.get("flow_run"), detail=data.get("detail", ""),
                   config=int(data.get("config") or 0), from_config=int(data.get("from_config") or 0))


# Switches back from a release that failed: they say nothing about what ran before.
PUT_BACK_ACTIONS = ("auto-rollback", "auto-put-back", "put-back")


def previous_release(history: list[HistoryEntry], current: str | None, available: list[str]) -> str | None:
    """Given the history (oldest first), the live release and the releases on the host, return
    the release that was live before the current one, or None.

    A switch that started but never finished (its process was killed) still counts: its
    `from` is what was live before. An automatic rollback (or a rolling deploy's put-back) does
    not: it came back from a release that failed. When the history does not know the current release (a
    host deployed by hand before), the newest other release on the host is the answer.
    """
    for entry in reversed(history):
        if entry.action in PUT_BACK_ACTIONS or entry.from_release == entry.to_release:
            continue  # a redeploy of the live tag says nothing about what came before it
        if entry.to_release == current and entry.outcome in ("started", "succeeded"):
            found = entry.from_release
            return found if found in available and found != current else None
    others = [r for r in available if r != current]
    return others[-1] if others else None


def release_to_put_back(tag: str, live: str | None, history: list[HistoryEntry], available: list[str]) -> str | None:
    """Given the tag being deployed, the live release, the history and the releases on the host,
    return the release a failed deploy of `tag` puts back: the live one; on a redeploy of the
    live tag (it is unhealthy, or the deploy would have nothing to do) the one live before it."""
    return live if live != tag else previous_release(history, live, available)


def rollback_target(to: str | None, history: list[HistoryEntry], live: str | None, available: list[str]) -> str:
    """Given rollback's `to` (None: the release live before the current one), the history, the live
    release and the releases on the host, return the release to put live. Raise ValueError when
    there is none, or it is not on the host (saying how to deploy it instead)."""
    target = to or previous_release(history, live, available)
    if target is None:
        raise ValueError(f"there is no earlier release on the host to roll back to (releases: "
                         f"{', '.join(available) or 'none'}; live: {live or 'none'})")
    if target not in available:
        raise ValueError(f"release {target} is not on the host (kept: {', '.join(available) or 'none'}); "
                         f"deploy it instead: ubertruck-ops run deploy --param tag={target}")
    return target


def put_back_for_run(history: list[HistoryEntry], flow_run: str) -> tuple[str, int] | None:
    """Given a host's history and the flow run of a deploy or rollback that switched it, return the
    release and configuration version that were live on the host before that run (what a failed
    rolling deploy puts back), or None when the run never switched this host or nothing was live before."""
    for entry in history:
        if entry.flow_run == flow_run and entry.action in ("deploy", "rollback", "reconfigure") and entry.outcome in (
                "started", "succeeded"):
            unchanged = (entry.from_release, entry.from_config) == (entry.to_release, entry.config)
            return None if entry.from_release is None or unchanged else (entry.from_release, entry.from_config)
    return None


@dataclass(frozen=True)
class SwitchPlan:
    """One switch of a host, decided before anything changes: what the history calls it, the release
    to put live, what is live now, the history's `from`, and what a failure puts back (None: nothing).
    `config` is the configuration version the release goes live with; `live_config` the one live now,
    which a failure puts back with `put_back`."""

    action: str                  # deploy | rollback | put-back | reconfigure
    tag: str
    live: str | None
    from_release: str | None
    put_back: str | None
    config: int = 0
    live_config: int = 0


def deploy_plan(tag: str, live: str | None, history: list[HistoryEntry], available: list[str],
                action: str = "deploy", config: int = 0, live_config: int = 0) -> SwitchPlan:
    """Given the tag to put live, the live release, the history and the releases on the host, return
    the plan of a deploy (or of one host's part of a rolling `action`) with configuration version
    `config`: a failure puts back release_to_put_back with the live configuration, and the history's
    `from` is that same release (on a redeploy of an unhealthy live tag it is the one live before, not
    the tag)."""
    previous = release_to_put_back(tag, live, history, available)
    return SwitchPlan(action, tag, live, previous, previous, config, live_config)


def rollback_plan(to: str | None, live: str | None, history: list[HistoryEntry], available: list[str],
                  live_config: int = 0) -> SwitchPlan:
    """Given rollback's `to` (None: the release live before the current one), the live release, the
    history, the releases on the host and the live configuration version, return the plan of a
    single-host rollback: from the live release to rollback_target with the configuration that is
    live now (configuration goes back only through `reconfigure`: a rotated secret never comes back
    with old code), putting nothing back on a failure (the live release is the one being left; the
    notice tells the operator to look). Raise ValueError as rollback_target does."""
    return SwitchPlan("rollback", rollback_target(to, history, live, available), live, live, None,
                      live_config, live_config)


def reconfigure_plan(live: str | None, live_config: int, config: int) -> SwitchPlan:
    """Given the live release, its configuration version and the new one, return the plan that puts
    the live release live again with `config`; a failure puts the live configuration back. Raise
    ValueError when nothing is live (there is nothing to reconfigure: deploy first)."""
    if live is None:
        raise ValueError("no release is live on the host: deploy one first (its configuration goes with it)")
    return SwitchPlan("reconfigure", live, live, live, live, config, live_config)


def host_put_back_plan(before: tuple[str, int] | None, live: str | None, live_config: int = 0) -> SwitchPlan | None:
    """Given what a host ran before a rolling run switched it (put_back_for_run: release and
    configuration version) and what is live, return the plan that puts it back (history action
    `put-back`), or None when there is nothing to put back."""
    if before is None:
        return None
    return SwitchPlan("put-back", before[0], live, live, None, before[1], live_config)


def undo_plan(undo_run: str, live: str | None, history: list[HistoryEntry], live_config: int = 0) -> SwitchPlan:
    """Given the failed rolling deploy that a rollback without a target undoes (its flow run id), the
    live release, the history and the live configuration version, return this host's part of that
    rollback: back to what the host ran before that run, with the configuration it ran with; the live
    release as it is when the run never switched the host or the host was put back already (nothing
    to do then). A failure puts the live release back, as every host's part of a rolling rollback does.
    Raise ValueError when nothing is live and the run never switched the host."""
    before = put_back_for_run(history, undo_run)
    target, config = before if before is not None else (live, live_config)
    if target is None:
        raise ValueError(f"no release is live on the host and flow run {undo_run} never switched it: "
                         "nothing to roll back to")
    return SwitchPlan("rollback", target, live, live, live, config, live_config)


@dataclass(frozen=True)
class PutBack:
    """What a failed switch puts back live, and the history action that records it."""

    release: str
    action: str                  # auto-rollback (a deploy failed) | auto-put-back (a rollback failed)
    config: int = 0              # the configuration version it goes back with


def put_back_plan(plan: SwitchPlan, complete: bool) -> PutBack | None:
    """Given a switch plan that failed and whether its put-back release is completely built on the
    host, return what to put back (with the configuration that was live), or None when there is
    nothing (no previous release, or a partial one: a half release would fail too)."""
    if plan.put_back is None or not complete:
        return None
    return PutBack(plan.put_back, "auto-rollback" if plan.action == "deploy" else "auto-put-back", plan.live_config)


def missing_tag(tag: str, tags: dict[str, str] | list[str], repo_url: str, host: str | None = None) -> str | None:
    """Given a tag and the repository's tags, return why a deploy of it is refused (the newest tags
    named, nothing changed; on `host` for a rolling deploy's host), or None when the tag exists."""
    if tag in tags:
        return None
    newest = ", ".join(sorted(tags, key=version_key)[-5:]) or "none"
    return (f"tag {tag} does not exist in {repo_url} (newest tags: {newest}); nothing was changed"
            + (f" on {host}" if host else ""))


def version_key(tag: str) -> tuple:
    """Given a release tag, return a key that sorts tags by version (v1.10.0 after v1.9.0)."""
    parts = tag.lstrip("v").split("-")[0].split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def releases_to_prune(releases: list[str], live: str | None, previous: str | None, keep: int) -> list[str]:
    """Given the releases on the host oldest first, return those to delete: all but the newest
    `keep`, never the live or the previous one."""
    protected = {live, previous}
    newest = set(releases[-keep:]) if keep > 0 else set()
    return [r for r in releases if r not in newest and r not in protected]


@dataclass
class Probe:
    """What one service answered during a health gate."""

    service: str
    health: int | None = None          # HTTP status, None when no answer
    version: str | None = None
    ready: int | None = None
    live: int | None = None
    error: str = ""


@dataclass
class GateVerdict:
    passed: bool
    problems: list[str] = field(default_factory=list)


def judge_gate(probes: list[Probe], expected_version: str) -> GateVerdict:
    """Given one probe per service, return whether each passed /health (reporting the expected
    version), /health/ready and /health/live, with one line per problem."""
    problems = []
    for probe in probes:
        if probe.health is None:
            problems.append(f"{probe.service}: no answer ({probe.error or 'connection failed'})")
            continue
        if probe.health != 200:
            problems.append(f"{probe.service}: /health answered {probe.health}")
        elif probe.version != expected_version:
            problems.append(f"{probe.service}: reports version {probe.version!r}, expected {expected_version!r}")
        if probe.ready is None or not 200 <= probe.ready < 300:
            problems.append(f"{probe.service}: /health/ready answered {probe.ready}")
        if probe.live is None or not 200 <= probe.live < 300:
            problems.append(f"{probe.service}: /health/live answered {probe.live}")
    return GateVerdict(passed=not problems, problems=problems)


def pending_migrations(files: list[str], applied: set[str]) -> list[str]:
    """Given a release's migration files and the names already applied, return those to apply, in order."""
    return sorted(f for f in files if f not in applied)

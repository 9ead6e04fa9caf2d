"""systemd unit files for the long-lived processes (pure; `ubertruck-ops systemd-units` prints them).

Every long-lived process ships as a unit (docs/operations.md): `serve` on a single machine, or with several
app hosts a Prefect worker per work queue; `wal-archive` and `watch` always. Each unit restarts
for ever (Restart=always), keeps what it writes private (UMask=0077), runs as a dedicated user,
reads PREFECT_API_URL and the like from a root-owned 0600 environment file (no secret in the unit)
and gets a stop timeout that lets it finish what it is doing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ubertruck_ops.core.fleet import WORK_POOL
from ubertruck_ops.core.names import shell_safe_path

STATE = "/var/lib/ubertruck-ops"       # StateDirectory=ubertruck-ops/...: PREFECT_HOME, UBERTRUCK_STATE_DIR
_ENVIRONMENT = re.compile(r"[a-z0-9-]{1,63}")     # blocks/environment.py's rule for environment names
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

# Stop timeouts, each what the process needs to finish what it is doing on SIGTERM:
SERVE_STOP_SECONDS = 300      # Prefect's runner cancels the runs in progress (they clean up), then the server stops
WORKER_STOP_SECONDS = 7200    # a worker takes no new run and waits for its runs (a nightly backup, a deploy)
ARCHIVE_STOP_SECONDS = 120    # wal-archive pushes what it holds, then stops pg_receivewal
WATCH_STOP_SECONDS = 60       # the round under way (5 s probes) and its notices


@dataclass(frozen=True)
class Unit:
    name: str         # the file name, e.g. ubertruck-ops-watch-production.service
    text: str         # its content, beginning with a `# <name>` line


def env_file(environment: str) -> str:
    return f"/etc/ubertruck-ops/{environment}.env"


def unit_name(kind: str, environment: str) -> str:
    """ubertruck-ops-<kind>-<environment>.service (kind: serve, wal-archive, watch, worker-<queue>)."""
    return f"ubertruck-ops-{kind}-{environment}.service"


def _service(name: str, description: str, user: str, environment: str, exec_start: str, stop_seconds: int, hardened: bool,
             after: str = "") -> str:
    """One unit's text. `hardened` adds NoNewPrivileges and a read-only /usr, /boot and /etc: right
    for wal-archive and watch, wrong for serve and workers, whose flows reload nginx through sudo
    (NGINX_RELOAD_COMMAND) and rewrite its upstreams under /etc/nginx."""
    hardening = ("NoNewPrivileges=yes\nProtectSystem=full\nProtectKernelModules=yes\nProtectKernelTunables=yes\n"
                 "ProtectControlGroups=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n") if hardened else (
        "# No NoNewPrivileges or ProtectSystem: its flows may reload nginx through sudo and rewrite\n"
        "# /etc/nginx/conf.d (deploys behind nginx). Run PM2 under its own unit (pm2 startup systemd):\n"
        "# a PM2 daemon started from here lives in this unit's cgroup and is killed when it stops.\n")
    return f"""# {name}
[Unit]
Description={description}
Wants=network-online.target
After=network-online.target{after}

[Service]
Type=simple
User={user}
# PREFECT_HOME and the state folder are created for the user, 0700 (StateDirectory); the
# environment file (root-owned, 0600) overrides any of these and holds PREFECT_API_URL and its auth.
StateDirectory=ubertruck-ops/prefect ubertruck-ops/state
StateDirectoryMode=0700
Environment=PREFECT_HOME={STATE}/prefect UBERTRUCK_STATE_DIR={STATE}/state DO_NOT_TRACK=1
EnvironmentFile={env_file(environment)}
ExecStart={exec_start}
Restart=always
RestartSec=10
UMask=0077
# SIGTERM to the main process only: it stops its children itself (runs, pg_receivewal, a private
# API) and anything left gets SIGKILL after TimeoutStopSec.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop_seconds}
PrivateTmp=yes
{hardening}
[Install]
WantedBy=multi-user.target
"""


def service_units(environment: str, ubertruck_ops: str, user: str = "ubertruck-ops",
                  hosts: list[str] | None = None, prefect: str | None = None) -> list[Unit]:
    """Given the environment, the absolute path of the installed `ubertruck-ops` (and of `prefect`
    beside it), the user to run as and the fleet's app hosts (none: a single machine), return the
    units: `serve`, or with several hosts a worker for the backups queue, the app-host queue and
    each host's queue; then `wal-archive` and `watch`. Raise ValueError on a name or path a unit
    cannot carry safely."""
    if not _ENVIRONMENT.fullmatch(environment):
        raise ValueError(f"environment name {environment!r} cannot name a unit: lowercase letters, digits and dashes")
    if not _USER.fullmatch(user):
        raise ValueError(f"user {user!r} is not a valid user name (lowercase letters, digits, '_' and '-')")
    if not ubertruck_ops.startswith("/") or (prefect is not None and not prefect.startswith("/")):
        raise ValueError(f"ExecStart needs absolute paths, got {ubertruck_ops!r}")
    command = shell_safe_path(ubertruck_ops, "the ubertruck-ops command")
    units = []
    # A fleet block, even of one host, makes deploys run their host steps on its queues: workers then.
    single = not hosts
    if single:
        name = unit_name("serve", environment)
        units.append(Unit(name, _service(
            name, f"ubertruck-ops serve ({environment}): the Prefect server and every deployment's schedule", user,
            environment, f"{command} serve --environment {environment}", SERVE_STOP_SECONDS, hardened=False)))
    else:
        worker = shell_safe_path(prefect or command.rsplit("/", 1)[0] + "/prefect", "the prefect command")
        for queue in ["backups", "app-host", *[f"app-host-{host}" for host in hosts]]:
            name = unit_name(f"worker-{queue}", environment)
            units.append(Unit(name, _service(
                name, f"Prefect worker of ubertruck-ops ({environment}), work queue {queue}", user, environment,
                f"{worker} worker start --pool {WORK_POOL} --work-queue {queue} --type process",
                WORKER_STOP_SECONDS, hardened=False)))
    after = f" {unit_name('serve', environment)}" if single else ""
    name = unit_name("wal-archive", environment)
    units.append(Unit(name, _service(
        name, f"ubertruck-ops wal-archive ({environment}): WAL streamed into the backup repository", user, environment,
        f"{command} wal-archive --environment {environment}", ARCHIVE_STOP_SECONDS, hardened=True, after=after)))
    name = unit_name("watch", environment)
    units.append(Unit(name, _service(
        name, f"ubertruck-ops watch ({environment}): health checks and alerts between the checklists", user, environment,
        f"{command} watch --environment {environment}", WATCH_STOP_SECONDS, hardened=True, after=after)))
    return units


def render(units: list[Unit]) -> str:
    """All units as one text, each beginning with its `# <name>` line (the file to save it as)."""
    return "\n".join(unit.text for unit in units)

"""`ubertruck-ops demo`: the sandbox up, nightly-backup, restore-drill, deploys and a rollback, the
morning checklist, and what happened."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

# Settings that would send the demo's runs somewhere else than its own folder: a server given to this
# shell (production's, perhaps) or another database.
ELSEWHERE = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILES_PATH",
             "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def demo_home(directory: str) -> Path:
    """Given the sandbox folder, return the demo's Prefect home beside it: `<dir>-prefect`."""
    base = Path(directory).resolve()
    return base.parent / (base.name + "-prefect")


def keep_demo_apart(directory: str) -> Path:
    """Point this process's Prefect at the demo's own home (`<dir>-prefect`, emptied: each demo starts
    clean, as its sandbox does) and at no server or database given elsewhere, with the project's
    host state (locks) inside it; return that home.

    Call it before anything imports prefect: Prefect reads its settings once, at import, so a
    PREFECT_HOME set later is ignored and the runs land in ~/.prefect (where a second demo's morning
    checklist then finds the first demo's failed deploy)."""
    home = demo_home(directory)
    if home.is_dir() and not home.is_symlink():
        shutil.rmtree(home)
    home.mkdir(parents=True, mode=0o700)   # made now: Prefect only warns when it cannot make it at import
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["UBERTRUCK_STATE_DIR"] = str(home / "state")
    for name in ELSEWHERE:
        os.environ.pop(name, None)
    return home


def ui_command(home: Path, port: int) -> str:
    """Return the one shell command that opens Prefect's UI on the runs kept in `home`, on `port`:
    the server asks for the auth string the demo's private API kept in `home` (its blocks hold the
    sandbox's secrets; no other local user may read them), and the UI is told its API's address
    (it asks /ui-settings: without it, a port other than 4200 shows "Oops")."""
    api = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).parent / "prefect"
    auth = shlex.quote(str(home / "api-auth-string"))
    return (f"PREFECT_HOME={shlex.quote(str(home))} PREFECT_SERVER_API_AUTH_STRING=\"$(cat {auth})\" "
            f"PREFECT_SERVER_UI_API_URL={api} PREFECT_SERVER_ANALYTICS_ENABLED=false "
            f"{shlex.quote(str(prefect))} server start --host 127.0.0.1 --port {port}")


def run_demo(directory: str, size_mb: int) -> int:
    base = Path(directory).resolve()
    home = demo_home(directory)     # where cli.main pointed Prefect before importing it (keep_demo_apart)
    from ubertruck_ops.core.checks import OK
    from ubertruck_ops.core.text import human_bytes, human_seconds
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits
    from ubertruck_ops.flows.checklists import morning_checklist
    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.flows.restore_drill import restore_drill
    from ubertruck_ops.flows.rollback import rollback
    from ubertruck_ops.sandbox.environment import Sandbox
    from ubertruck_ops.tasks.checks.orchestration import checklist_rows
    from ubertruck_ops.tasks.scratch_postgres import free_port

    print(f"[1/5] sandbox: embedded PostgreSQL 18 with a ~{size_mb} MB Ubertruck database, the sample "
          f"application's git repository and an application host under PM2, in {base}")
    clock = time.monotonic()
    sandbox = Sandbox(base, size_mb, slack_webhook=os.environ.get("SLACK_WEBHOOK_URL"), with_app=True)
    try:
        sandbox.start(save_as="sandbox")
        ensure_concurrency_limits()
        print(f"      ready in {human_seconds(time.monotonic() - clock)}: "
              f"{sum(sandbox.row_counts.values()):,} rows in {len(sandbox.row_counts)} tables")
        print("[2/5] nightly-backup (environment=sandbox)")
        backup = nightly_backup(environment="sandbox", return_state=True)
        if not backup.is_completed():
            print(f"nightly-backup failed: {backup.message}")
            return 1
        result = backup.result()
        print(f"      backup {result['backup_id']} in {human_seconds(result['duration_seconds'])}: " +
              ", ".join(f"{name} {human_bytes(size)}" for name, size in result["objects"].items()))
        if result["missing_paths"]:
            print("      not archived (missing, reported not fatal): " + ", ".join(result["missing_paths"]))
        print("[3/5] restore-drill into a throwaway PostgreSQL")
        drill = restore_drill(environment="sandbox", return_state=True)
        if not drill.is_completed():
            print(f"restore-drill failed: {drill.message}")
            return 1
        report = drill.result()["logical"]
        print(f"      drill passed: {report['tables']} tables, {report['rows']:,} rows match the manifest; "
              f"RTO {human_seconds(report['rto_seconds'])}, RPO {human_seconds(report['rpo_seconds'])}")
        print("[4/5] deploy v1.1.0, deploy v1.2.0 (zero-downtime hand-over), deploy the broken v1.3.0 "
              "(rolled back by itself), rollback to v1.1.0")
        for tag in ("v1.1.0", "v1.2.0"):
            result = deploy(tag=tag, environment="sandbox")
            extra = f", migrations {', '.join(result['migrations'])} after backup {result['backup_id']}" \
                if result["migrations"] else ""
            print(f"      {tag} live in {human_seconds(result['duration_seconds'])}{extra}")
        broken = deploy(tag="v1.3.0", environment="sandbox", return_state=True)
        print(f"      v1.3.0: {broken.type.value}, rolled back by itself: {broken.message[:150]}...")
        back = rollback(environment="sandbox")
        print(f"      rollback to {back['tag']} in {human_seconds(back['duration_seconds'])}; services: "
              + ", ".join(f"{name}:{port}" for name, port in sandbox.env.app.services.items()))
        print("[5/5] morning-checklist (9:00) against the sandbox")
        checklist = morning_checklist(environment="sandbox", return_state=True)
        rows = checklist_rows(checklist.state_details.flow_run_id)
        for row in rows:
            if row["status"] != OK:
                print(f"      {row['status']:>8} {row['severity'] or '':<6} {row['name']}: {row['detail'][:110]}")
        tally = {status: sum(r["status"] == status for r in rows) for status in ("critical", "error", "warn", "ok")}
        print(f"      {checklist.type.value}: " + ", ".join(f"{n} {s}" for s, n in tally.items())
              + " (the full table and report are artifacts morning-checklist-results / -report)")
    finally:
        sandbox.stop()
    port = free_port()
    print(f"""
Where to look:
  backups (encrypted, manifest.json last): {sandbox.repository_dir}
  application host: {sandbox.env.app.app_root} (releases/, current, shared/deploy-history.jsonl)
  sandbox database data (stopped): {sandbox.server.data}
  Prefect runs, logs and artifacts (nightly-backup-summary, restore-drill-report), all kept in {home}
Demo finished in {human_seconds(time.monotonic() - clock)}. To see its runs in Prefect's UI, run this and open
http://127.0.0.1:{port} (it asks for the auth string in {home / 'api-auth-string'}; Ctrl-C stops it):
  {ui_command(home, port)}""")
    return 0


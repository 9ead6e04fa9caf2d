"""Deployments, schedules, serve and `prefect deployment run` from CI, against a real
`prefect server start` and a real process worker."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.deployments.registry import FLOWS
from ubertruck_ops.deployments.schedules import DEPLOYMENTS, TIMEZONE, WORK_POOL, render_prefect_yaml
from ubertruck_ops.deployments.serve import wait_for_api
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import cli_env as _cli_env
from tests.helpers import make_database, save_env, stop_process
from tests.parts import Browser

PROJECT = Path(__file__).resolve().parents[1]
IST = ZoneInfo(TIMEZONE)


def test_prefect_yaml_is_rendered_from_the_one_source_of_schedules():
    assert (PROJECT / "prefect.yaml").read_text() == render_prefect_yaml(), \
        "prefect.yaml drifted: run `ubertruck-ops deployments-yaml > prefect.yaml`"
    assert {spec.flow for spec in DEPLOYMENTS} == set(FLOWS)
    crons = {spec.flow: spec.cron for spec in DEPLOYMENTS}
    assert crons["nightly-backup"] == "0 2 * * *" and crons["incremental-backup"] == "0 */6 * * *"
    assert (crons["morning-checklist"], crons["afternoon-checklist"], crons["evening-checklist"]) == \
        ("0 9 * * *", "0 14 * * *", "0 18 * * *")
    assert crons["weekly-maintenance"].endswith("* * 0") and crons["monthly-maintenance"].endswith(" 1 * *")
    assert crons["deploy"] is crons["rollback"] is crons["restore"] is None


def test_every_parameter_has_a_type_a_description_and_no_secret():
    for name, flow in FLOWS.items():
        schema = flow.parameters
        for parameter, spec in schema.properties.items():
            assert spec.get("description"), f"{name}.{parameter} has no description"
            assert "type" in spec or "anyOf" in spec or "allOf" in spec or "enum" in spec or "$ref" in spec, \
                f"{name}.{parameter} has no type"
            assert not any(word in parameter for word in ("password", "secret", "token", "key")), parameter
        required = set(schema.required or [])
        assert required <= {"tag"}, f"{name} requires {required}"


def _prefect(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(prefect_server):
    env = _cli_env(prefect_server["api"], prefect_server["home"])
    # --overwrite: the server is shared, and the rolling-deploy tests may have made the pool already.
    created = _prefect("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    result = _prefect("--no-prompt", "deploy", "--all", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return prefect_server


def _read(api: str, call):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        with get_client(sync_client=True) as client:
            return call(client)


def _schedules(api: str) -> dict[str, tuple]:
    def collect(client):
        # Deployments first, then flows: while serve registers, a deployment read after the flows could
        # name a flow created in between (KeyError); every flow a deployment names exists before it.
        deployments = client.read_deployments(limit=200)
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
        # prefect.yaml's deployments act on production; the shared server also holds other tests' deployments.
        return {flows[d.flow_id]: (d.name, tuple((s.schedule.cron, s.schedule.timezone, s.active)
                                                 for s in d.schedules)) for d in deployments
                if d.name == "production"}
    return _read(api, collect)


def _yaml_schedules() -> dict[str, tuple]:
    document = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    flows = {spec.entrypoint: spec.flow for spec in DEPLOYMENTS}
    return {flows[d["entrypoint"]]: (d["name"], tuple((s["cron"], s["timezone"], s["active"]) for s in d["schedules"]))
            for d in document["deployments"]}


def test_prefect_deploy_all_creates_every_deployment_with_next_runs_in_india_time(deployed):
    api = deployed["api"]
    assert _schedules(api) == _yaml_schedules()
    details = _read(api, lambda client: {d.name + "/" + str(d.flow_id): d for d in client.read_deployments(limit=200)})
    assert all(d.work_pool_name == WORK_POOL and d.enforce_parameter_schema for d in details.values())

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    def next_runs(client):
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
        found = {}
        for deployment in [d for d in client.read_deployments(limit=200) if d.name == "production"]:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.SCHEDULED]))), limit=20)
            found[flows[deployment.flow_id]] = sorted(r.expected_start_time.astimezone(IST) for r in runs)
        return found

    deadline = time.monotonic() + 90
    runs = _read(api, next_runs)
    while not all(runs.get(name) for name in ("nightly-backup", "morning-checklist", "weekly-maintenance")) \
            and time.monotonic() < deadline:
        time.sleep(2)
        runs = _read(api, next_runs)
    assert runs["nightly-backup"] and all((r.hour, r.minute) == (2, 0) for r in runs["nightly-backup"])
    assert all((r.hour, r.minute) == (9, 0) for r in runs["morning-checklist"])
    assert all((r.hour, r.minute) == (14, 0) for r in runs["afternoon-checklist"])
    assert all((r.hour, r.minute) == (18, 0) for r in runs["evening-checklist"])
    assert all(r.hour % 6 == 0 and r.minute == 0 for r in runs["incremental-backup"])
    assert all(r.weekday() == 6 for r in runs["weekly-maintenance"])       # Sunday
    assert all(r.day == 1 for r in runs.get("monthly-maintenance", []))
    assert not runs.get("deploy") and not runs.get("rollback") and not runs.get("restore")

    # The evening checklist's check of the backup schedules sees them, with their next runs.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.tasks.checks.orchestration import backup_schedules

    with temporary_settings({PREFECT_API_URL: api}):
        seen = {r.name: r for r in backup_schedules("production")}
    assert seen["schedule nightly-backup"].status == "ok", seen["schedule nightly-backup"]
    assert "nightly-backup/production: next run" in seen["schedule nightly-backup"].detail
    assert seen["schedule incremental-backup"].status == "ok"
    with temporary_settings({PREFECT_API_URL: api}):
        assert [r.status for r in backup_schedules("staging")] == ["warn", "warn"]     # no staging deployments


def test_a_worker_runs_a_deployment_and_the_server_alone_reports_what_no_run_could_at_a_plain_http_url(
        deployed, pg18, local_repo, slack):
    """The server's automations post Slack's JSON to a Slack-compatible receiver at a plain
    http://127.0.0.1 URL and page PagerDuty for a critical flow: a nightly backup that failed before
    it could report (its environment has no blocks), and one that crashed. A run that reported its own
    failure is not posted again, a crashed host-release step (its deploy reports it) not at all. A
    "missing" window survives two `blocks init` and a `serve` restart inside it, and still fires."""
    from datetime import timedelta
    from uuid import UUID

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed
    from pydantic import SecretStr

    from ubertruck_ops.core.alerts import flow_dedup_key
    from ubertruck_ops.deployments.automations import MissingRule, ensure_automations, missing_rules
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits

    from tests.parts import PagerDutyReceiver

    api = deployed["api"]
    db = make_database(pg18)
    pagerduty = PagerDutyReceiver().start()
    hook, page = slack.webhook("T0/B0/server"), (pagerduty.events_url, "R0UTING-server-sentinel")
    window = timedelta(seconds=30)
    rules = [MissingRule(r.name, r.flow, r.deployment, window) for r in missing_rules("production")]
    with temporary_settings({PREFECT_API_URL: api}):
        env_name = save_env(db, BackupRepository(url=str(local_repo)))
        broken = save_env(db.model_copy(update={"password": SecretStr("wrong")}), BackupRepository(url=str(local_repo)),
                          slack_url=slack.webhook("T0/B0/flow"))
        ensure_concurrency_limits()
        first = ensure_automations("production", hook, rules=rules, pagerduty=page)
        assert [line.split()[-1] for line in first] == ["created"] * len(first)
        names = _read(api, lambda client: [a.name for a in client.read_automations()])
        assert all(names.count(line.split()[0].removeprefix("automation/")) == 1 for line in first), names
    env = _cli_env(api, deployed["home"])
    log = open(deployed["home"] / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
                               "--type", "process"], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        good = _prefect("deployment", "run", "nightly-backup/production", "--param", f"environment={env_name}",
                        "--watch", "--watch-timeout", "400", env=env, timeout=500)
        completed = time.monotonic()
        assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-2000:]
        assert list(local_repo.glob("*/*/*/*/manifest.json")), "the worker's run stored no backup"
        with temporary_settings({PREFECT_API_URL: api}):       # blocks init, inside the window
            again = ensure_automations("production", hook, rules=rules, pagerduty=page)
        assert [line.split()[-1] for line in again] == ["unchanged"] * len(first), again
        bad = _prefect("deployment", "run", "nightly-backup/production", "--param", "environment=no-such-env",
                       "--watch", "--watch-timeout", "400", env=env, timeout=500)
        assert bad.returncode != 0 and "Failed" in bad.stdout + bad.stderr
        alert = _wait_for_text(slack, "nightly-backup/production run", 60)
        assert "ended Failed" in alert and "no-such-env" in alert, alert
        assert f"{api.removesuffix('/api')}/runs/flow-run/" in alert, alert
        reported = _prefect("deployment", "run", "nightly-backup/production", "--param", f"environment={broken}",
                            "--watch", "--watch-timeout", "400", env=env, timeout=500)
        assert reported.returncode != 0
        with temporary_settings({PREFECT_API_URL: api}):       # and again, as a restarted serve does
            assert {line.split()[-1] for line in ensure_automations("production", hook, rules=rules,
                                                                     pagerduty=page)} == {"unchanged"}
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    try:
        # no worker now: the server itself says the nightly backup went missing, 30 s after the good run
        # whatever the updates in between did (each used to restart the window)
        missing = _wait_for_text(slack, "nightly-backup/production MISSING", 60)
        late = time.monotonic() - completed
        assert "no Completed run in the last" in missing, missing
        assert late < window.total_seconds() + 20, f"missing came {late:.0f} s after the last completed run"

        def crash(flow: str) -> None:
            def run(client):
                deployment = next(d for d in client.read_deployments(limit=200)
                                  if d.name == "production" and d.entrypoint.endswith(flow.replace("-", "_")))
                created = client.create_flow_run_from_deployment(deployment.id, parameters={"environment": env_name})
                client.set_flow_run_state(UUID(str(created.id)), Crashed(message=f"{flow} killed"), force=True)
            _read(api, run)
        crash("host_release")
        crash("nightly-backup")
        crashed = _wait_for_text(slack, "ended Crashed", 60)
        assert "nightly-backup/production" in crashed, crashed
        time.sleep(5)                      # room for a host-release post that must not come
        texts = [p.get("text", "") for p in slack.posts]
        assert not [t for t in texts if "host-release" in t], texts
        assert not [t for t in texts if "ended Failed" in t and "no-such-env" not in t], texts    # reported itself
        assert [t for t in texts if "nightly backup FAILED" in t], "the broken run did not report itself"
        key = flow_dedup_key("production", "nightly-backup")
        triggers = [e for e in pagerduty.events if e["event_action"] == "trigger"]
        assert pagerduty.refused == [] and {e["dedup_key"] for e in triggers} == {key}, pagerduty.events
        assert len(triggers) >= 3                 # the unreported failure, the missing run, the crash
        assert all(e["payload"]["severity"] == "critical" for e in triggers)
        assert "R0UTING-server-sentinel" not in " ".join(texts) and "T0/B0/server" not in " ".join(texts)
    finally:
        pagerduty.stop()
        from prefect.automations import Automation

        with temporary_settings({PREFECT_API_URL: api}):     # the server is shared: no alerts left firing
            for line in first:
                Automation.read(name=line.split()[0].removeprefix("automation/")).delete()


def _wait_for_text(slack, text: str, seconds: float) -> str:
    """The first Slack post (`{"text": ...}`) containing `text`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for post in list(slack.posts):
            if text in post.get("text", ""):
                return post["text"]
        time.sleep(0.5)
    raise AssertionError(f"no post with {text!r} within {seconds:.0f} s; got {slack.posts[-5:]}")


def test_serve_starts_its_own_server_and_registers_the_same_schedules_as_prefect_yaml(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _cli_env(None, tmp_path / "prefect-home")
    log = open(tmp_path / "serve.log", "wb")
    serving = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "serve", "--port", str(port)],
                               cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    from contextlib import ExitStack

    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    auth = ExitStack()
    try:
        wait_for_api(api, serving, 180)
        # serve's API requires the auth string it keeps in PREFECT_HOME (0600)
        secret = (tmp_path / "prefect-home" / "api-auth-string").read_text().strip()
        auth.enter_context(temporary_settings({PREFECT_API_AUTH_STRING: secret}))
        deadline = time.monotonic() + 120
        schedules = _schedules(api)
        while len(schedules) < len(DEPLOYMENTS) and time.monotonic() < deadline:
            time.sleep(1)
            schedules = _schedules(api)
        assert schedules == _yaml_schedules()
        limits = _read(api, lambda client: {g.name for g in client.read_global_concurrency_limits(limit=50)})
        assert {"ubertruck-backup", "ubertruck-deploy"} <= limits
        # the UI served on this port sends its API calls to this port (not to 4200's)
        assert httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()["api_url"] == api
        _a_person_logs_in_and_sees_every_deployment(f"http://127.0.0.1:{port}", secret, tmp_path)
    finally:
        auth.close()
        stopped = stop_process(serving, signal.SIGINT, timeout=60)     # killed after that: nothing outlives the test
        log.close()
    assert stopped is not None, "serve did not exit within 60 s of SIGINT (killed)"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=2)          # the server it started is gone too


def _a_person_logs_in_and_sees_every_deployment(ui: str, secret: str, tmp_path: Path) -> None:
    """Debian's Chromium opens serve's UI: the login page, the auth string typed in, then the
    deployments page lists every deployment with its schedule (issue 15 saw "Oops. Something went
    wrong" and no deployments on a --port server). The screenshot stays in tmp_path."""
    browser = Browser(tmp_path / "chromium").start()
    try:
        browser.open(f"{ui}/deployments", until="Login")
        browser.evaluate("document.querySelector('input[type=password]').focus()")
        browser.call("Input.insertText", text=secret)
        browser.evaluate("document.querySelector('form').requestSubmit()")
        flows = {spec.flow for spec in DEPLOYMENTS}

        def listed(text: str) -> list[str]:
            """The flows of the table's rows: each row reads "<deployment name>" then "<flow name>"."""
            lines = text.split("Items per page")[0].splitlines()
            return [line for above, line in zip(lines, lines[1:]) if above == "production" and line in flows]
        page = browser.open(f"{ui}/deployments", until=lambda text: f"{len(DEPLOYMENTS)} Deployments" in text
                            and len(listed(text)) >= 10)
        png = browser.screenshot(tmp_path / "deployments.png")
    finally:
        browser.stop()
    assert "Something went wrong" not in page and "Authentication failed" not in page, page[:2000]
    assert len(set(listed(page))) == len(listed(page)) == 10, page[:2000]      # the first page of 12, by 10
    assert "At 02:00 AM every day" in page and "At 09:00 AM every day" in page
    width, height = struct.unpack(">II", png[16:24])          # the PNG's IHDR
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and width == 1400 and height > 800 and len(png) > 50_000


def test_the_example_ci_workflow_tests_then_runs_the_deploy_deployment_on_v_tags_and_waits():
    # An example for the application repository: a v* tag of this repository starts nothing.
    assert not (PROJECT / ".github" / "workflows").exists()
    workflow = yaml.safe_load((PROJECT / "examples" / "app-repository" / "deploy.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]      # YAML 1.1 reads `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    test_steps = [s.get("run", "") for s in workflow["jobs"]["test"]["steps"]]
    assert test_steps[-4:] == ["npm ci", "npm test --if-present", "npm audit --omit=dev --audit-level=high",
                               "npm run build --if-present"]
    assert workflow["jobs"]["deploy"]["needs"] == "test"
    steps = workflow["jobs"]["deploy"]["steps"]
    command = next(s["run"] for s in steps if "deployment run" in s.get("run", ""))
    assert "prefect deployment run 'deploy/production'" in command
    assert '--param "tag=${TAG}"' in command and "--watch" in command and "requested_by=${ACTOR}" in command
    names = {f"{spec.flow}/production" for spec in DEPLOYMENTS}
    assert "deploy/production" in names


def test_serve_on_a_shared_server_keeps_one_of_each_alert_and_leaves_every_schedule_on_when_it_stops(
        prefect_server, tmp_path):
    api = prefect_server["api"]
    environment = "served-elsewhere"
    env = _cli_env(api, tmp_path / "prefect-home")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.blocks.database import PostgresDatabase
    from ubertruck_ops.deployments.automations import all_rule_names
    from ubertruck_ops.deployments.setup import ensure_alerts

    with temporary_settings({PREFECT_API_URL: api}):
        # blocks init's part first (the environment's blocks, its automations), then serve does it again
        save_env(PostgresDatabase(host="127.0.0.1", port=1, database="d", user="u"),
                 BackupRepository(url=str(tmp_path / "repo")), name=environment,
                 slack_url="https://hooks.slack.com/services/T0/B0/shared")
        assert all(line.endswith(" created") for line in ensure_alerts(environment))
    rules = set(all_rule_names(environment))
    log = open(tmp_path / "serve.log", "wb")
    serving = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "serve", "--environment",
                                environment], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def served(client):
        return [d for d in client.read_deployments(limit=200) if d.name == environment]

    try:
        deadline = time.monotonic() + 180
        while len(_read(api, served)) < len(DEPLOYMENTS):
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "serve did not register its deployments"
            time.sleep(1)
        # after `blocks init` and after serve: one automation of each name, every rule
        automations = _read(api, lambda client: [a.name for a in client.read_automations()])
        assert sorted(name for name in automations if name in rules) == sorted(rules), automations
        assert f"automation/ubertruck-{environment}-run-failed unchanged" in (tmp_path / "serve.log").read_text()
        serving.send_signal(signal.SIGTERM)
        serving.wait(timeout=60)
        deployments = _read(api, served)
        assert [d.paused for d in deployments] == [False] * len(DEPLOYMENTS)
        scheduled = sum(1 for spec in DEPLOYMENTS if spec.cron)
        assert sum(1 for d in deployments for s in d.schedules if s.active) == scheduled
    finally:
        if serving.poll() is None:
            serving.kill()
        log.close()
        _read(api, lambda client: [client.delete_deployment(d.id) for d in served(client)])
        _read(api, lambda client: [client.delete_automation(a.id) for a in client.read_automations()
                                   if a.name in rules])


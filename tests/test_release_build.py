"""The release's build as the guide's release process runs it, on real npm (packages through npm's cache),
tsc, PM2 and Node: dependencies with the compiler, build with source maps, tests, audit, prune."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.tasks import health, release

from tests.helpers import make_database, save_env
from tests.parts import NpmAuditEndpoint, advisory

pytestmark = pytest.mark.real_builds     # these tests are about the build: no kept builds reused


def versions(app) -> set:
    return {health.probe(name, port).version for name, port in app.services.items()}


def test_a_failing_npm_test_or_a_vulnerable_dependency_refuses_the_release_before_anything_live_changed(
        pg18, app_host, local_repo, slack):
    app = app_host
    db = make_database(pg18, size_mb=2)
    endpoint = NpmAuditEndpoint({"ms": [advisory("Regular expression denial of service in ms", "high")]}).start()
    try:
        app = app.model_copy(update={"audit_registry": endpoint.url})
        env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook())
        refused = deploy(tag="v1.0.0", environment=env, return_state=True)
        assert refused.is_failed()
        assert "npm audit found 1 high" in str(refused.message), refused.message
        assert "Regular expression denial of service in ms" in str(refused.message)
        assert release.live_release(app) is None and release.releases(app) == []
        assert endpoint.requests and {"ms"} <= set(endpoint.requests[0]), endpoint.requests
        assert "typescript" not in endpoint.requests[0], "dev dependencies are not audited (--omit=dev)"

        # The same advisory under a critical level passes; the release goes live.
        app.model_copy(update={"audit_level": "critical"}).save(block_name(env, "app"), overwrite=True)
        assert deploy(tag="v1.0.0", environment=env)["status"] == "deployed"
    finally:
        endpoint.stop()
    assert versions(app) == {"v1.0.0"}

    failed = deploy(tag="v1.4.0", environment=env, return_state=True)
    assert failed.is_failed()
    assert "npm test failed in user-service" in str(failed.message), failed.message
    assert "not ok" in str(failed.message) and "a configured service reads its variables" in str(failed.message)
    assert versions(app) == {"v1.0.0"} and release.live_release(app) == "v1.0.0"
    assert "v1.4.0" not in release.releases(app) and not list(Path(app.releases_dir).glob(".v1.4.0*"))
    notice = next(t for t in reversed(slack.full_texts()) if "v1.4.0" in t and "FAILED" in t.upper())
    assert "npm test failed in user-service" in notice and "nothing live was changed" in notice


def test_the_live_build_is_pruned_keeps_its_source_maps_and_a_stack_trace_names_the_typescript_file(
        pg18, app_host, local_repo, slack):
    app = app_host.model_copy(update={"audit_registry": "http://127.0.0.1:9/"})     # nobody answers there
    db = make_database(pg18, size_mb=2)
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook())
    deployed = deploy(tag="v1.1.0", environment=env)
    assert deployed["status"] == "deployed" and deployed["requested_by"] == "unknown"    # called, not started by anyone

    service = Path(app.releases_dir) / "v1.1.0" / "user-service"
    assert (service / "node_modules" / "ms").is_dir(), "the runtime dependency is installed"
    assert not (service / "node_modules" / "typescript").exists(), "dev dependencies are pruned before go-live"
    assert (service / "dist" / "main.js.map").is_file()
    # The audit could not be asked: a warning in the notice, not a failure.
    succeeded = next(t for t in slack.full_texts() if "deploy of v1.1.0 succeeded" in t)
    assert "the audit could not be done" in succeeded and "not a failure" in succeeded

    conn = http.client.HTTPConnection("127.0.0.1", app.services["user-service"], timeout=5)
    conn.request("GET", "/api/boom")
    assert conn.getresponse().status == 500
    error_log = Path(app.logs) / "user-service-error.log"
    deadline = time.monotonic() + 10
    while "boom" not in (error_log.read_text() if error_log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    trace = error_log.read_text()
    assert "boom (a handler that throws" in trace
    assert "src/main.ts:" in trace, f"the stack does not point into the TypeScript source:\n{trace[-1500:]}"

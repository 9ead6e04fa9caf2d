"""core/notices.py: Slack payloads say what happened and carry no secret."""

from __future__ import annotations

from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import Manifest, StoredObject


def test_slack_payloads_carry_no_secret():
    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "t0", "t1", {}, {}, {},
                        [StoredObject("database.dump.zst.gpg", "database", 1 << 20, "0" * 64)], {"core.users": 7},
                        missing_paths=["/etc/nginx/sites-available/ubertruck"])
    success = notices.backup_succeeded("production", manifest, 75.0)
    assert "20261124T020000Z-logical-a1b2c3" in str(success) and "1m 15s" in str(success)
    assert "/etc/nginx/sites-available/ubertruck" in str(success)
    failure = notices.operation_failed("nightly backup", "production", "dump the database", "boom")
    assert failure["text"].startswith(":x: [production] nightly backup FAILED at step 'dump the database'")


def test_failure_notices_say_a_complete_backup_is_kept_and_what_retention_freed():
    kept = notices.backup_kept_after_failure("nightly backup", "production", "20261124T020000Z-logical-a1b2c3",
                                             "apply retention", "RepositoryError: delete failed")
    assert kept["text"] == (":x: [production] nightly backup FAILED at step 'apply retention' after backup "
                            "20261124T020000Z-logical-a1b2c3 completed: the backup is complete and kept")
    assert notices.after_failed_backup({"expired": ["x"], "bytes_freed": 3 << 20}) == [
        "retention after the failure freed 3.0 MiB: 1 expired backup(s) deleted"]
    assert notices.after_failed_backup({"expired": [], "bytes_freed": 0}) == []
    assert notices.after_failed_backup({"failed_backup_removed": True}) == [
        "retention after the failure could not run (see the run log)"]
    unreadable = notices.unreadable_manifests("production", {"2026/10/01/x/manifest.json": "unsupported format 2"})
    assert "retention kept 1 backup(s) whose manifest it cannot read" in unreadable["text"]
    assert "`2026/10/01/x/manifest.json`: unsupported format 2" in str(unreadable)


def _text(payload: dict) -> str:
    return payload["blocks"][0]["text"]["text"]


def test_a_rolling_failure_notice_says_only_what_was_done_to_the_balancer():
    timed_out = notices.rolling_failed("deploy of v1.2.0", "production", "take web-1 out of the load balancer",
                                       "nginx's workers still hold connections after 2 s", {}, ["web-2", "web-3"],
                                       {"web-1": notices.BACK_IN})
    text = _text(timed_out)
    assert "no host had been switched" in text and "never touched: web-2, web-3" in text
    assert "every host is back in the load balancer (put back: web-1)" in text
    stuck = _text(notices.rolling_failed("deploy of v1.2.0", "production", "go-live on web-2", "boom",
                                         {"web-1": "put back"}, ["web-3"],
                                         {"web-2": notices.BACK_IN, "web-3": "nginx -t failed"}))
    assert "every host is back" not in stuck
    assert "web-3 is OUT of the load balancer: putting it back failed (nginx -t failed)" in stuck
    assert "put back into the load balancer: web-2" in stuck
    no_balancer = _text(notices.rolling_failed("deploy of v1.2.0", "production", "go-live on web-1", "boom",
                                               {"web-1": "put back"}, [], None))
    assert "load balancer" not in no_balancer

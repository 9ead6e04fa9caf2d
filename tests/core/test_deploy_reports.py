"""core/deploy_reports.py: the summaries deploys and rollbacks publish, built from what they did."""

from __future__ import annotations

from ubertruck_ops.core.deploy_reports import (
    deploy_summary,
    rollback_summary,
    rolling_deploy_summary,
    rolling_rollback_releases,
    rolling_rollback_summary,
)
from ubertruck_ops.core.releases import HistoryEntry


def entry(n: int, action: str, frm: str | None, to: str, outcome: str) -> HistoryEntry:
    return HistoryEntry(at=f"2026-12-05T03:{n:02d}:00.123456+00:00", action=action, from_release=frm, to_release=to,
                        outcome=outcome)


def test_a_deploy_summary_names_what_it_did_and_the_newest_history_first():
    history = [entry(n, "deploy", None, "v1.0.0", "succeeded") for n in range(12)]
    history += [entry(50, "deploy", "v1.0.0", "v1.1.0", "started"),
                entry(51, "deploy", "v1.0.0", "v1.1.0", "succeeded")]
    text = deploy_summary("v1.1.0", "abc123", "v1.0.0", {"user-service": 3001, "fleet-service": 3002},
                          ["002_notes.sql"], "20261205T0300Z-full", ["v0.9.0"], 75.0, history)
    assert text.startswith("# Deploy `v1.1.0`\n\n- commit: `abc123`\n- requested by: unknown\n"
                           "- previous release: v1.0.0\n- duration: 1m 15s\n")
    assert "- services: user-service:3001, fleet-service:3002 (PM2 cluster mode, handed over one by one)\n" in text
    assert "- migrations: 002_notes.sql (backup `20261205T0300Z-full` first)\n- releases pruned: v0.9.0\n" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert len(rows) == 10                                   # the newest ten only
    assert rows[0] == "| 2026-12-05T03:51:00 | deploy | v1.0.0 | v1.1.0 | succeeded |"
    assert rows[-1] == "| 2026-12-05T03:04:00 | deploy | - | v1.0.0 | succeeded |"


def test_a_first_deploy_without_migrations_or_pruning_says_none():
    text = deploy_summary("v1.0.0", "abc", None, {"user-service": 3001}, [], None, [], 5.0, [])
    assert "- previous release: none\n" in text and "- migrations: none new\n" in text
    assert "- releases pruned: none\n" in text and text.endswith("|---|---|---|---|---|\n\n")


def test_rollback_summaries_name_the_target_the_hosts_and_what_was_live():
    assert rollback_summary("v1.0.0", "v1.1.0", 3.0) == ("# Rollback to `v1.0.0`\n\n- was live: v1.1.0\n"
                                                         "- duration: 3.0 s\n- health gate: passed\n")
    assert "- was live: none\n" in rollback_summary("v1.0.0", None, 3.0)
    assert rolling_rollback_summary(None, ["web-1", "web-2"], 3.0) == (
        "# Rolling rollback to `the previous release`\n\n- hosts: web-1, web-2\n- duration: 3.0 s\n")
    assert rolling_rollback_summary("v1.0.0", ["web-1"], 3.0).startswith("# Rolling rollback to `v1.0.0`\n")
    assert rolling_rollback_releases(None, ["web-1", "web-2"]) == ("each host's own (hosts: web-1, web-2)",
                                                                   "each host's previous release")
    assert rolling_rollback_releases("v1.0.0", ["web-1"])[1] == "v1.0.0"
    assert rolling_rollback_summary(None, ["web-1"], 3.0, undo_run="run-x").startswith(
        "# Rolling rollback to `each host's release before the failed deploy (flow run run-x)`\n")
    assert rolling_rollback_releases(None, ["web-1"], "run-x")[1] == "each host's release before the failed deploy"


def test_a_rolling_deploy_summary_names_the_hosts_batches_and_skipped_hosts():
    assert rolling_deploy_summary("v1.1.0", ["web-1", "web-2"], 2, ["web-3"], 3.0) == (
        "# Rolling deploy `v1.1.0`\n\n- hosts: web-1, web-2 (2 batch(es))\n- skipped: web-3\n- duration: 3.0 s\n")
    assert "- skipped: none\n" in rolling_deploy_summary("v1.1.0", ["web-1"], 1, [], 3.0)


def test_release_notes_show_twenty_commits_and_count_the_rest():
    from ubertruck_ops.core.deploy_reports import release_notes

    assert release_notes(["fix the booking total", "add driver ratings"]) == ["- fix the booking total",
                                                                              "- add driver ratings"]
    many = release_notes([f"commit {n}" for n in range(23)])
    assert len(many) == 21 and many[19] == "- commit 19" and many[-1] == "- ... and 3 more commit(s)"
    assert release_notes([]) == []


def test_who_asked_is_the_parameter_then_what_prefect_recorded_then_the_schedule_then_unknown():
    from ubertruck_ops.core.deploy_reports import deploy_summary, who_asked

    assert who_asked("octocat (CI)", "USER", "alice", False) == "octocat (CI)"
    assert who_asked(None, "AUTOMATION", "redeploy on failure", False) == "redeploy on failure (automation)"
    assert who_asked("  ", None, None, True) == "the schedule"
    assert who_asked(None, None, None, False) == "unknown"
    text = deploy_summary("v1.1.0", "abc", "v1.0.0", {"user-service": 3001}, [], None, [], 5.0, [], "octocat (CI)",
                          ["- fix the booking total"])
    assert "- requested by: octocat (CI)" in text and "## Commits since v1.0.0\n\n- fix the booking total" in text

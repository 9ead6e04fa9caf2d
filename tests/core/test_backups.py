"""core/backups.py: when a planned incremental cannot go ahead, a new chain starts and says why."""

from __future__ import annotations

from ubertruck_ops.core.backups import NO_PREVIOUS_MANIFEST, base_instead


def test_an_incremental_without_its_previous_manifest_starts_a_new_chain():
    assert base_instead("incremental") == ("base", NO_PREVIOUS_MANIFEST)
    assert "only public keys" in NO_PREVIOUS_MANIFEST


def test_a_failed_incremental_starts_a_new_chain_naming_its_error_cut_short():
    kind, why = base_instead("incremental", "pg_basebackup: WAL summaries are missing " + "x" * 500)
    assert kind == "base" and why.startswith("the incremental failed (pg_basebackup: WAL summaries are missing")
    assert why.endswith("), so a new chain starts") and len(why) < 260


def test_a_failed_base_backup_has_nothing_to_fall_back_to():
    assert base_instead("base") is None
    assert base_instead("base", "pg_basebackup: could not connect") is None

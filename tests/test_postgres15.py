"""Production runs PostgreSQL 15; our tools are 18's. The round trip must work across them."""

from __future__ import annotations

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.helpers import make_database, save_env
from tests.parts import table_checksums


def test_postgres15_backup_restores_into_postgres15_and_into_the_drills_postgres18(pg15, local_repo):
    source = make_database(pg15)
    repo = BackupRepository(url=str(local_repo))
    env = save_env(source, repo)
    before = table_checksums(source)

    result = nightly_backup(environment=env)
    target = pg15.database(f"{source.database}_restored")
    restore(environment=env, target_environment=save_env(target, repo))

    assert table_checksums(target) == before
    drill = restore_drill(environment=env)   # default scratch target: embedded PostgreSQL 18
    assert drill["passed"] and drill["logical"]["backup_id"] == result["backup_id"]


def test_every_database_question_of_the_checklists_and_maintenance_is_answered_by_postgres15(pg15):
    """The 9:00 / 14:00 / 18:00 checklists and the weekly maintenance ask PostgreSQL 15 the same questions."""
    from ubertruck_ops.blocks.monitoring import DEFAULT_QUERIES, CheckThresholds
    from ubertruck_ops.tasks.checks import database

    source = make_database(pg15, size_mb=3)
    limits = CheckThresholds()
    call = lambda check, *args: getattr(check, "fn", check)(*args)   # some are Prefect tasks, some functions
    results = [call(database.reachable, source), call(database.connections, source, limits),
               call(database.buffer_cache_hit, source, limits)]
    assert [r.status for r in results if r.status not in ("ok", "warn")] == [], results
    answers = {name: call(database.query_number, source, sql) for name, sql in DEFAULT_QUERIES.items()}
    assert all(isinstance(v, float) for v in answers.values()) and answers["bookings_day"] >= 0
    stats = call(database.dead_tuples, source)
    assert {s["table"] for s in stats} >= {"booking.bookings"}
    call(database.vacuum_analyze, source, [s["table"] for s in stats][:2])
    assert call(database.database_size, source) > 1 << 20

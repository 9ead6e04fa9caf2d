"""Production runs PostgreSQL 15; our tools are 18's. The round trip must work across them."""

from __future__ import annotations

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.conftest import make_database, save_env
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

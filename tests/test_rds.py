"""The RDS tier end to end on real parts: moto's RDS (and KMS) over HTTP for the API, and a local
PostgreSQL 18 standing for every restored instance's endpoint.

moto's server runs in this process, so the test points moto's model of an instance at 127.0.0.1
(its `address`) and gives the source instance the local server's port (a restored instance keeps
its source's): the flows and operations never know. Snapshots and instances are made older by
setting the model's creation times, as RDS would have them after days.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.rds.models import DBInstance, rds_backends
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import SecretStr

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.rds import RdsInstance
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core import rds
from ubertruck_ops.flows.incremental_backup import incremental_backup
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.operations.rds import rds_drill
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import make_database, save_env
from tests.parts import flow_run_artifacts

REGION, DR_REGION, ACCOUNT = "ap-south-1", "eu-west-1", "123456789012"
NOW = datetime.now(UTC)


def client(endpoint: str, region: str = REGION, service: str = "rds"):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="test",
                        aws_secret_access_key="test")


def backend(region: str = REGION):
    return rds_backends[ACCOUNT][region]


def age_snapshot(snapshot_id: str, days: float, region: str = REGION) -> None:
    backend(region).database_snapshots[snapshot_id].created = NOW - timedelta(days=days)


def snapshot_ids(api, instance_id: str) -> set[str]:
    return {s["DBSnapshotIdentifier"] for s in api.describe_db_snapshots(DBInstanceIdentifier=instance_id)["DBSnapshots"]}


def instance_ids(api) -> set[str]:
    return {i["DBInstanceIdentifier"] for i in api.describe_db_instances()["DBInstances"]}


def new_source(api, port: int, retention: int = 7) -> str:
    """An RDS PostgreSQL 15 source instance whose endpoint (and its restores') is 127.0.0.1:port."""
    instance_id = f"ut-rds-{secrets.token_hex(3)}"
    api.create_db_instance(DBInstanceIdentifier=instance_id, Engine="postgres", EngineVersion="15.7",
                           DBInstanceClass="db.t3.micro", MasterUsername="ubertruck_admin",
                           MasterUserPassword="not-used-by-the-test", AllocatedStorage=20, Port=port,
                           BackupRetentionPeriod=retention)
    return instance_id


def our_snapshot(api, instance_id: str, name: str, days: float = 0.0) -> str:
    api.create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier=instance_id,
                           Tags=rds.as_tag_list(rds.snapshot_tags("test", "six-hourly", instance_id)))
    if days:
        age_snapshot(name, days)
    return name


def save_rds(env: str, endpoint: str, instance_id: str, **fields) -> RdsInstance:
    block = RdsInstance(instance_id=instance_id, poll_seconds=0.05, snapshot_timeout_seconds=30,
                        restore_timeout_seconds=30, aws=AwsCredentials(
                            aws_access_key_id="AKIATESTKEY", aws_secret_access_key=SecretStr("test"),
                            region_name=REGION, aws_client_parameters=AwsClientParameters(endpoint_url=endpoint)),
                        **fields)
    block.save(block_name(env, "rds"), overwrite=True)
    return block


@pytest.fixture(scope="module")
def local_endpoint():
    """Every instance moto describes answers on 127.0.0.1 (its port is the source's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DBInstance, "address", property(lambda self: "127.0.0.1"))
        yield


@pytest.fixture(scope="module")
def world(pg18, moto_server, local_endpoint, tmp_path_factory):
    """One database with a nightly backup (the manifest the drill checks against), an RDS source
    instance "running" it, and an environment whose rds block names that instance."""
    db = make_database(pg18, size_mb=9)
    repo = tmp_path_factory.mktemp("rds-repository")
    env = save_env(db, BackupRepository(url=str(repo)))
    backup = nightly_backup(environment=env)
    api = client(moto_server)
    instance_id = new_source(api, pg18.port)
    key = client(moto_server, DR_REGION, "kms").create_key(Description="ubertruck DR")["KeyMetadata"]
    block = save_rds(env, moto_server, instance_id, dr_region=DR_REGION, kms_key_id=key["KeyId"])
    return {"db": db, "env": env, "api": api, "instance_id": instance_id, "key_arn": key["Arn"], "block": block,
            "backup_id": backup["backup_id"], "repo": repo}


def test_six_hourly_snapshots_copies_to_dr_and_expires_only_our_old_snapshots(world, moto_server):
    api, dr, instance_id = world["api"], client(moto_server, DR_REGION), world["instance_id"]
    old = [our_snapshot(api, instance_id, f"ubertruck-snap-{instance_id}-old{i}", days) for i, days in ((1, 10), (2, 8))]
    recent = our_snapshot(api, instance_id, f"ubertruck-snap-{instance_id}-recent", 2)
    alike = f"ubertruck-snap-{instance_id}-alike"     # our name, not our tag: someone else's
    api.create_db_snapshot(DBSnapshotIdentifier=alike, DBInstanceIdentifier=instance_id)
    age_snapshot(alike, 30)
    dba = our_snapshot(api, instance_id, "dba-before-upgrade", 30)   # our tag, not our name
    old_copy = dr.copy_db_snapshot(SourceDBSnapshotIdentifier=f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{old[0]}",
                                   TargetDBSnapshotIdentifier=old[0], SourceRegion=REGION,
                                   Tags=rds.as_tag_list(rds.snapshot_tags("test", "six-hourly", instance_id)))
    age_snapshot(old_copy["DBSnapshot"]["DBSnapshotIdentifier"], 10, DR_REGION)

    result = incremental_backup(environment=world["env"])   # the six-hourly deployment, in the RDS tier

    assert result["tier"] == "rds-snapshots" and f"RDS instance {instance_id}" in result["tier_why"]
    new = result["snapshot_id"]
    assert new.startswith(f"ubertruck-snap-{instance_id}-") and result["status"] == "ok" and result["errors"] == []
    [made] = api.describe_db_snapshots(DBSnapshotIdentifier=new)["DBSnapshots"]
    tags = {t["Key"]: t["Value"] for t in made["TagList"]}
    assert made["Status"] == "available" and tags["environment"] == world["env"] and tags["schedule"] == "six-hourly"
    assert tags[rds.PROJECT_TAG] == rds.SNAPSHOT_KIND
    [copy] = dr.describe_db_snapshots(DBSnapshotIdentifier=new)["DBSnapshots"]
    assert copy["KmsKeyId"] == world["key_arn"] and result["copied_to"] == f"{DR_REGION}/{new}"
    assert result["expired"] == {REGION: sorted(old), DR_REGION: [old[0]]}
    assert snapshot_ids(api, instance_id) >= {new, recent, alike, dba} and not set(old) & snapshot_ids(api, instance_id)
    assert snapshot_ids(dr, instance_id) == {new}
    assert [c["status"] for c in result["checks"]] == ["ok", "ok"]


def test_six_hourly_keeps_its_snapshot_then_fails_on_short_retention_and_warns_on_rpo(world, moto_server, monkeypatch):
    api, instance_id = world["api"], world["instance_id"]
    api.modify_db_instance(DBInstanceIdentifier=instance_id, BackupRetentionPeriod=1, ApplyImmediately=True)
    monkeypatch.setattr(DBInstance, "latest_restorable_time",
                        property(lambda self: datetime.now(UTC) - timedelta(minutes=20)))
    before = snapshot_ids(api, instance_id)
    try:
        state = incremental_backup(environment=world["env"], return_state=True)
    finally:
        api.modify_db_instance(DBInstanceIdentifier=instance_id, BackupRetentionPeriod=7, ApplyImmediately=True)

    assert state.is_failed()
    message = str(state.message)
    assert "is complete and kept" in message and "rds backup retention" in message
    assert "automated backups are kept 1 day(s)" in message and "point-in-time window" not in message
    [kept] = snapshot_ids(api, instance_id) - before
    assert api.describe_db_snapshots(DBSnapshotIdentifier=kept)["DBSnapshots"][0]["Status"] == "available"
    [artifact] = [a for a in flow_run_artifacts(state) if a.key == "rds-six-hourly-summary"]
    assert "| rds point-in-time window | warn |" in artifact.data and "| rds backup retention | critical |" in artifact.data


def test_drill_restores_into_a_scratch_instance_verifies_and_deletes_it_and_old_leftovers(world, moto_server):
    api, instance_id = world["api"], world["instance_id"]
    newest = our_snapshot(api, instance_id, f"ubertruck-snap-{instance_id}-drill")
    leftover = f"ubertruck-drill-{instance_id}-20200101-000000"
    api.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=leftover, DBSnapshotIdentifier=newest,
                                             Tags=rds.as_tag_list(rds.scratch_tags("test", instance_id, newest)))
    backend().databases[leftover].instance_create_time = NOW - timedelta(hours=30)
    young = f"ubertruck-drill-{instance_id}-20990101-000000"   # another drill's, running now: not touched
    api.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=young, DBSnapshotIdentifier=newest,
                                             Tags=rds.as_tag_list(rds.scratch_tags("test", instance_id, newest)))
    before = instance_ids(api)

    state = restore_drill(environment=world["env"], mode="applicable", return_state=True)   # the monthly drills

    assert state.is_completed(), state.message
    result = state.result()
    assert result["passed"] and result["physical"] is None
    assert result["logical"]["backup_id"] == world["backup_id"] and result["logical"]["passed"]
    report = result["rds"]
    assert report["kind"] == "rds" and report["passed"] and report["backup_id"] == report["chain"][0]
    assert report["backup_id"] == max((s for s in api.describe_db_snapshots(DBInstanceIdentifier=instance_id)
                                       ["DBSnapshots"] if rds.is_ours(rds.SnapshotInfo(
                                           s["DBSnapshotIdentifier"], instance_id, s["SnapshotCreateTime"],
                                           tags={t["Key"]: t["Value"] for t in s["TagList"]}), instance_id)),
                                      key=lambda s: s["SnapshotCreateTime"])["DBSnapshotIdentifier"]
    assert report["tables"] >= 6 and report["rows"] > 0 and report["rto_seconds"] > 0
    assert instance_ids(api) == before - {leftover}        # the scratch instance and the leftover are gone
    assert young in instance_ids(api) and instance_id in instance_ids(api)
    [artifact] = [a for a in flow_run_artifacts(state) if a.key == "restore-drill-rds-report"]
    assert "PASSED" in artifact.data and leftover in artifact.data
    api.delete_db_instance(DBInstanceIdentifier=young, SkipFinalSnapshot=True)


def test_drill_that_cannot_connect_fails_and_still_deletes_its_scratch_instance(world, moto_server):
    api = world["api"]
    broken = new_source(api, free_port())        # nothing listens on its port
    our_snapshot(api, broken, f"ubertruck-snap-{broken}-1")
    save_rds(world["env"], moto_server, broken)
    before = instance_ids(api)
    try:
        state = restore_drill(environment=world["env"], mode="rds", return_state=True)
    finally:
        save_rds(world["env"], moto_server, world["instance_id"], dr_region=DR_REGION,
                 kms_key_id=world["block"].kms_key_id)

    assert state.is_failed()
    assert "RDS restore drill of" in str(state.message) and "cannot connect" in str(state.message)
    assert instance_ids(api) == before and not [i for i in instance_ids(api) if i.startswith(f"ubertruck-drill-{broken}")]


def test_restore_into_a_named_new_instance_keeps_it_and_refuses_the_source(world, moto_server):
    api, instance_id = world["api"], world["instance_id"]
    our_snapshot(api, instance_id, f"ubertruck-snap-{instance_id}-restore")
    target = f"{instance_id}-restored"

    refused = restore(environment=world["env"], rds_instance=instance_id.upper(), return_state=True)
    assert refused.is_failed() and "it is the source instance" in str(refused.message)
    mixed = restore(environment=world["env"], rds_instance=target, confirm="x", return_state=True)
    assert mixed.is_failed() and "confirm: not with rds_instance" in str(mixed.message)
    assert target not in instance_ids(api)

    result = restore(environment=world["env"], rds_instance=target)

    assert result["instance_id"] == target and result["endpoint"] == f"127.0.0.1:{world['db'].port}"
    assert result["row_counts"]["booking.bookings"] > 0
    [made] = api.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"]
    assert made["DBInstanceStatus"] == "available"
    assert {t["Key"]: t["Value"] for t in made["TagList"]}["restored-from"] == f"ubertruck-snap-{instance_id}-restore"
    assert api.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]["DBInstanceStatus"] == "available"
    api.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)


def test_blocks_init_reads_the_rds_variables_and_names_a_bad_instance_id():
    from ubertruck_ops.blocks.variables import environment_from_variables

    base = {"DATABASE_URL": "postgresql://u:p@localhost/ubertruck_prod", "BACKUP_ENCRYPTION_KEY": "k" * 24,
            "BACKUP_REPOSITORY": "/var/backups/ubertruck", "AWS_ACCESS_KEY_ID": "AKIAX",
            "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret", "AWS_REGION": "ap-south-1"}
    assert environment_from_variables(base).rds is None
    env = environment_from_variables({**base, "RDS_INSTANCE_ID": "ubertruck-prod", "RDS_DR_REGION": DR_REGION,
                                      "RDS_KMS_KEY_ID": "alias/ubertruck-dr", "RDS_ENDPOINT_URL": "http://127.0.0.1:1"})
    block = env.rds
    assert (block.instance_id, block.dr_region, block.kms_key_id, block.region) == (
        "ubertruck-prod", DR_REGION, "alias/ubertruck-dr", "ap-south-1")
    assert block.aws.aws_client_parameters.endpoint_url == "http://127.0.0.1:1"
    assert block.aws.aws_secret_access_key.get_secret_value() == "sentinel-aws-secret"
    assert (block.snapshot_retention_days, block.min_backup_retention_days, block.rpo_warn_minutes,
            block.rpo_critical_minutes) == (7, 3, 15, 60)
    with pytest.raises(ValueError, match="RDS_INSTANCE_ID is refused") as refused:
        environment_from_variables({**base, "RDS_INSTANCE_ID": "prod--db"})
    assert "sentinel" not in str(refused.value)


def test_a_cancelled_drill_still_deletes_its_scratch_instance(world, monkeypatch):
    """Prefect cancels a served or worker run by SIGTERM, raised in the flow as TerminationSignal
    (a BaseException): here it arrives while the drill connects to the scratch instance."""
    import signal

    from prefect.exceptions import TerminationSignal

    from ubertruck_ops.tasks import postgres

    api, instance_id = world["api"], world["instance_id"]
    during: list[set[str]] = []

    def cancelled(*args, **kwargs):
        during.append(instance_ids(api))
        raise TerminationSignal(signal.SIGTERM)

    our_snapshot(api, instance_id, f"ubertruck-snap-{instance_id}-cancel")
    before = instance_ids(api)
    monkeypatch.setattr(postgres, "connect", cancelled)

    with pytest.raises(TerminationSignal):
        with operation("RDS restore drill", world["env"], notify_failures=False) as op:
            rds_drill(op)

    [scratch] = during[0] - before
    assert scratch.startswith(f"ubertruck-drill-{instance_id}-")
    assert instance_ids(api) == before

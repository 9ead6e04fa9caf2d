"""Benchmark: incremental-backup chain size and speed, WAL-archiving RPO, point-in-time restore time.

One run builds an embedded PostgreSQL 18 on 127.0.0.1 started for physical backups (summarize_wal,
wal_level=replica, wal senders, slots; the owner gets REPLICATION) holding ~--size-mb MB of Ubertruck
data (as Sandbox.start, which takes no server settings, does), VACUUMed (hint bits set, as in a
database that has lived); starts a WalStreamer in a thread, saves the blocks as environment `bench`
in a throwaway Prefect API (prefect_test_harness) and measures:
  (1) the incremental-backup flow, --rounds times each (medians reported): a base backup
      (force_full); 5% new rows (bookings with their payments, pings, audit rows: how the app
      changes), CHECKPOINT, an incremental; UPDATE of the newest 5% of the rows of every table (the
      next newest 5% in each further round), CHECKPOINT, an incremental (goals on both); last,
      once, UPDATE of 5% of the rows of every table spread evenly (`id % 20 = 0`, the worst case:
      nearly every page changes), an incremental (information; last, as its aftermath - pruning,
      hint bits on every page at the next scan - would land in the others). Stored size (sum of the result's `objects`), wall time of the flow
      run and of its physical-backup step (wrapping `tasks.physical.take_basebackup`) against the
      base's: goals <= 15%, <= 30%. Flow runs without Prefect's flow heartbeats, as in the tests;
      (1*) measures what the default heartbeats (every 180 s) add to any flow run's exit.
  (2) RPO: archive_timeout = '30s' (ALTER SYSTEM + pg_reload_conf; PostgreSQL switches segments on
      archive_timeout even with archive_mode off, so no archive_command is configured; the table
      shows the observed switch interval). A thread commits one small INSERT every 0.5 s for
      --load-seconds, noting pg_walfile_name(pg_current_wal_insert_lsn()) after each; the main thread
      polls <repo>/wal/<segment>.json every 0.1 s. RPO of a commit: until its sidecar exists; max <= 60 s.
  (3) restore time: after a final segment switch is archived and the streamer stopped,
      restore(method="physical") of the whole chain plus archived WAL into a new data directory
      (rebuild, replay, start, verify, stop); then one nightly-backup run and restore_into of it
      into a new database on the same server (as benchmarks/backup.py times it). Information.
Prints a Markdown table with PASS/FAIL per goal; a failing phase is reported and the rest still run.
Exit status 0 whatever the verdicts. All it starts (servers, streamer, folders) is removed at exit.

    .venv/bin/python benchmarks/incremental.py [--size-mb 450] [--rounds 3] [--load-seconds 180] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

MB, MIB, ENV = 1_000_000, 1 << 20, "bench"
SIZE_GOAL, TIME_GOAL, RPO_GOAL = 0.15, 0.30, 60.0
PHYSICAL = {"summarize_wal": "on", "wal_level": "replica", "max_wal_senders": "4", "max_replication_slots": "4"}
CHANGES = {"core.users": "is_active = NOT is_active", "fleet.trucks": "model_year = model_year + 1",
           "booking.bookings": "notes = coalesce(notes, '') || ' (amended)'",
           "payment.payments": "gateway_ref = coalesce(gateway_ref, '') || 'x'",
           "tracking.tracking_events": "accuracy_m = accuracy_m + 1",
           "admin.audit_log": "details = details || '{\"amended\": true}'"}
# "newest": round k (from 0) updates the k-th newest 5% of the ids, rows no earlier round touched.
PATTERNS = {"newest": "id > (SELECT max(id) * (0.95 - 0.05 * {round}) FROM {table}) "
                      "AND id <= (SELECT max(id) * (1 - 0.05 * {round}) FROM {table})",
            "spread": "id % 20 = 0"}


def build(root: Path, size_mb: int, cleanup: list):
    """Sandbox.start's database, on a server started with PHYSICAL settings; return (server, bytes, Environment)."""
    import psycopg
    from psycopg import sql
    from pydantic import SecretStr

    from ubertruck_ops.sandbox import data
    from ubertruck_ops.sandbox.environment import (  # the names Sandbox.start uses, as it imports them
        DATABASE,
        OWNER,
        ArchiveSources,
        BackupEncryption,
        BackupRepository,
        Environment,
        LocalServer,
        PostgresDatabase,
        SlackNotices,
        client_bin_dir,
    )
    server = LocalServer(client_bin_dir(), root / "postgres", durable=True, settings=PHYSICAL).start()
    cleanup.append(server.destroy)
    password = secrets.token_urlsafe(18)
    with psycopg.connect(**server.database().connect_kwargs(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE REPLICATION PASSWORD {}").format(
            sql.Identifier(OWNER), sql.Literal(password)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(OWNER)))
    db = PostgresDatabase(host="127.0.0.1", port=server.port, database=DATABASE, user=OWNER,
                          password=SecretStr(password))
    with psycopg.connect(**db.connect_kwargs()) as conn:
        data.apply_schema(conn)
        data.generate(conn, size_mb)
    with psycopg.connect(**db.connect_kwargs(), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    (root / "repository").mkdir()
    return server, size, Environment(
        database=db, encryption=BackupEncryption(passphrase=SecretStr(secrets.token_urlsafe(32))),
        repository=BackupRepository(url=str(root / "repository")), slack=SlackNotices(),
        archive=ArchiveSources(app_root=None, config_files=[]))


def timed(call, *args, **kwargs):
    clock = time.monotonic()
    result = call(*args, **kwargs)
    return time.monotonic() - clock, result


def change_rows(server, db, pattern: str, round_: int = 0) -> int:
    """UPDATE 5% of every table's rows (PATTERNS[pattern]), then CHECKPOINT; return the rows changed."""
    import psycopg
    with psycopg.connect(**db.connect_kwargs()) as conn:
        changed = sum(conn.execute(f"UPDATE {table} SET {assignment} WHERE "
                                   + PATTERNS[pattern].format(table=table, round=round_)).rowcount
                      for table, assignment in CHANGES.items())
    with server.local_connection() as conn:
        conn.execute("CHECKPOINT")
    return changed


def append_rows(server, db) -> int:
    """Add new bookings with their payments, GPS pings and audit rows (how the app really changes)
    until about 5% more rows exist, then CHECKPOINT; return the rows added."""
    import psycopg

    from ubertruck_ops.sandbox import data
    from ubertruck_ops.tasks import postgres
    with psycopg.connect(**db.connect_kwargs()) as conn:
        before = sum(postgres.row_counts(conn).values())
        while sum(postgres.row_counts(conn).values()) < before * 1.05:
            data.add_activity(conn, bookings=2000)
        added = sum(postgres.row_counts(conn).values()) - before
    with server.local_connection() as conn:
        conn.execute("CHECKPOINT")
    return added


def backup(steps: list, force_full: bool = False) -> dict:
    """One incremental-backup flow run: its result plus flow and step wall times."""
    from ubertruck_ops.flows.incremental_backup import incremental_backup
    steps.clear()
    wall, result = timed(incremental_backup, ENV, force_full=force_full)  # raises on failure
    return {"kind": result["kind"], "flow": wall, "step": steps[-1], "size": sum(result["objects"].values())}


def rounds(count: int, change, steps: list) -> dict:
    """`count` times: change (None for a forced base), then a backup; return the medians and the runs."""
    runs = []
    for _ in range(count):
        if change:
            change()
        runs.append(backup(steps, force_full=change is None))
    return {"kind": runs[-1]["kind"] if all(r["kind"] == runs[-1]["kind"] for r in runs) else "mixed",
            **{key: statistics.median(r[key] for r in runs) for key in ("flow", "step", "size")},
            "ranges": {key: (min(r[key] for r in runs), max(r[key] for r in runs)) for key in ("flow", "step")},
            "runs": len(runs)}


def heartbeat_cost(count: int = 5) -> dict:
    """Median wall of an empty flow run with Prefect's default flow heartbeats and without."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    @flow(name="bench-empty-flow")
    def empty() -> None:
        return None

    walls = {}
    for label, frequency in (("on", 180), ("off", None)):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: frequency}):
            walls[label] = statistics.median(timed(empty)[0] for _ in range(count))
    return walls


def rpo_probe(db, repo_dir: Path, seconds: float, streamer) -> dict:
    """Commit an INSERT every 0.5 s for `seconds`; return per-commit seconds until its WAL segment is archived."""
    import psycopg
    commits, stop = [], threading.Event()

    def write() -> None:
        with psycopg.connect(**db.connect_kwargs(), autocommit=True) as conn:
            while not stop.wait(0.5) and streamer.error is None:
                conn.execute("INSERT INTO admin.audit_log (action, entity) VALUES ('rpo-probe', 'bench')")
                commits.append((time.monotonic(),  # committed; then where that commit's WAL is
                                conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]))

    writer, seen = threading.Thread(target=write, daemon=True), {}
    writer.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end + 3 * RPO_GOAL:  # then give the last segments time to arrive
        if time.monotonic() >= end and not stop.is_set():
            stop.set()
            writer.join(timeout=30)
        for segment in {s for _, s in commits} - set(seen):
            if (repo_dir / "wal" / f"{segment}.json").exists():
                seen[segment] = time.monotonic()
        if stop.is_set() and all(s in seen for _, s in commits):
            break
        if streamer.error is not None:
            raise RuntimeError(f"WAL streamer stopped: {streamer.error}")
        time.sleep(0.1)
    stop.set()
    lags = [seen[s] - t if s in seen else float("inf") for t, s in commits]
    order = sorted(seen.values())
    return {"lags": lags, "segments": len(seen), "missing": sum(s not in seen for _, s in commits),
            "interval": statistics.median(b - a for a, b in itertools.pairwise(order)) if len(order) > 2 else None}


def measure(root: Path, args, m: dict) -> None:
    """Run every phase; record results in m, and a phase's error under m['errors'] (later phases still run)."""
    import psycopg
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from ubertruck_ops.blocks.environment import save_environment
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.flows.restore import restore
    from ubertruck_ops.operations.logical_restore import restore_into
    from ubertruck_ops.tasks import catalog, load, physical, postgres
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.repository import open_repository
    from ubertruck_ops.tasks.wal import WalStreamer
    errors, steps, original = m["errors"], [], physical.take_basebackup

    def attempt(name: str, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the next phase still runs
            errors[name] = f"{type(exc).__name__}: {str(exc)[:600]}"
            traceback.print_exc()
            return None

    def timed_step(*a, **k):
        clock = time.monotonic()
        try:
            return original(*a, **k)
        finally:
            steps.append(time.monotonic() - clock)  # the last call counts (the flow may retry as a base)

    print(f"building a ~{args.size_mb} MB database in {root}", flush=True)
    server, size, env = build(root, args.size_mb, m["cleanup"])
    m["db_mb"] = size / MB
    repo = open_repository(env.repository)
    streamer = WalStreamer(env, repo, environment=ENV)
    thread = threading.Thread(target=streamer.run, daemon=True)
    thread.start()
    m["cleanup"].append(lambda: (streamer.stop(), thread.join(timeout=60), streamer.remove_spool()))
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        save_environment(env, ENV)
        ensure_concurrency_limits()
        m["heartbeats"] = attempt("(1*) flow heartbeats", heartbeat_cost)
        physical.take_basebackup = timed_step  # this process only: the flow looks it up at call time
        changed = {"appended": [], "newest": [], "spread": []}
        try:
            print(f"(1) {m['db_mb']:.0f} MB, {args.rounds} rounds: bases; 5% new rows; newest 5% updated; "
                  "then once 5% updated spread evenly", flush=True)
            m["base"] = attempt("(1) base backups", rounds, args.rounds, None, steps)
            m["appended"] = attempt("(1) incrementals after 5% new rows", rounds, args.rounds,
                                    lambda: changed["appended"].append(append_rows(server, env.database)), steps)
            for pattern, count in (("newest", args.rounds), ("spread", 1)):
                m[pattern] = attempt(f"(1) incrementals after the {pattern} update", rounds, count,
                                     lambda pattern=pattern: changed[pattern].append(
                                         change_rows(server, env.database, pattern, len(changed[pattern]))),
                                     steps)
        finally:
            physical.take_basebackup = original
            m["rows"] = changed
        with server.local_connection() as conn:
            conn.execute("ALTER SYSTEM SET archive_timeout = '30s'")
            conn.execute("SELECT pg_reload_conf()")
        print(f"(2) RPO: one INSERT every 0.5 s for {args.load_seconds} s, archive_timeout 30 s", flush=True)
        m["rpo"] = attempt("(2) RPO", rpo_probe, env.database, root / "repository", args.load_seconds, streamer)
        with server.local_connection() as conn:  # close the last segment: the restore replays all archived WAL
            last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 120
        while not (root / "repository" / "wal" / f"{last}.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        streamer.stop()
        thread.join(timeout=60)
        with psycopg.connect(**env.database.connect_kwargs()) as conn:
            source_counts = postgres.row_counts(conn)
        print("(3) physical restore of the chain, then nightly-backup and restore_into", flush=True)
        pitr = attempt("(3) physical restore", timed, restore, environment=ENV, method="physical",
                       restore_folder=str(root / "pitr"))
        m["pitr"] = pitr and {"wall": pitr[0], "wal_files": pitr[1]["wal_files"], "chain": len(pitr[1]["chain"]),
                              "counts_match": pitr[1]["row_counts"] == source_counts}
        shutil.rmtree(root / "pitr", ignore_errors=True)
        nightly = attempt("(3) nightly-backup", nightly_backup, ENV)
        if nightly:
            manifest = catalog.find_backup(repo, nightly["backup_id"])
            with gpg_session(env.encryption, for_restore=True) as gpg:
                roles = load.read_roles(repo, manifest, gpg)
                logical = attempt("(3) restore_into", timed, restore_into, server.database(), "bench_logical",
                                  manifest, repo, gpg, roles)
            m["logical"] = logical and {"wall": logical[0], "size": sum(o.size for o in manifest.objects)}


def report(m: dict, args) -> str:
    rows, errors = ["| measurement | value | goal | result |", "|---|---|---|---|"], m["errors"]

    def row(what, value, goal="information", ok=None):
        verdict = "-" if ok is None else ("PASS" if ok else "**FAIL**")
        rows.append(f"| {what} | {value} | {goal} | {verdict} |")

    base = m.get("base")

    def spread_of(result, key):
        low, high = result["ranges"][key]
        return f" (runs {low:.2f}-{high:.2f})" if result["runs"] > 1 else ""

    if base:
        row(f"(1) base backup, median of {base['runs']}: flow / physical-backup step / stored",
            f"{base['flow']:.2f} s{spread_of(base, 'flow')} / {base['step']:.2f} s{spread_of(base, 'step')} / "
            f"{base['size'] / MIB:.1f} MiB", "reference")
    for pattern, label, goals in (
            ("appended", "(1) incremental after 5% new rows (bookings, payments, pings)", True),
            ("newest", "(1) incremental after the newest 5% of rows updated (each round the next 5%)", True),
            ("spread", "(1) incremental after 5% of rows updated spread evenly (`id % 20 = 0`): worst case", False)):
        inc = m.get(pattern)
        if not (base and inc):
            continue
        if inc["kind"] != "incremental":
            row(label, f"the flow took a {inc['kind']} backup", "an incremental", False)
        for what, key, unit, goal in (("stored", "size", "MiB", SIZE_GOAL), ("flow run wall", "flow", "s", TIME_GOAL),
                                      ("physical-backup step wall", "step", "s", None)):
            ratio, value = inc[key] / base[key], inc[key] / (MIB if key == "size" else 1)
            judged, runs = goals and goal is not None, f", median of {inc['runs']}" if inc["runs"] > 1 else ""
            row(f"{label}: {what}{runs}",
                f"{value:.2f} {unit}{spread_of(inc, key) if key != 'size' else ''} = {100 * ratio:.1f}% of base",
                *((f"<= {100 * goal:.0f}%", ratio <= goal) if judged else ("information",)))
    beats = m.get("heartbeats")
    if beats:
        row("(1*) an empty flow run with Prefect's default flow heartbeats (180 s) / without, median of 5",
            f"{beats['on']:.2f} s / {beats['off']:.2f} s: +{beats['on'] - beats['off']:.2f} s on every flow run's exit "
            "(the heartbeat thread sleeps in 1 s steps and is joined)")
    rpo = m.get("rpo")
    if rpo and rpo["lags"]:
        worst, finite = max(rpo["lags"]), [x for x in rpo["lags"] if x != float("inf")]
        interval = f"{rpo['interval']:.1f} s" if rpo["interval"] else "n/a"
        row(f"(2) RPO over {len(rpo['lags'])} commits in {args.load_seconds} s (archive_timeout 30 s)",
            f"max {worst:.1f} s, median {statistics.median(finite) if finite else float('inf'):.1f} s; "
            f"{rpo['segments']} segments, median switch interval {interval}, {rpo['missing']} never archived",
            f"max <= {RPO_GOAL:.0f} s", worst <= RPO_GOAL)
    pitr, logical = m.get("pitr"), m.get("logical")
    if pitr:
        row("(3) physical restore of the chain + WAL (`restore(method=\"physical\")`)",
            f"{pitr['wall']:.1f} s ({pitr['chain']} backups, {pitr['wal_files']} WAL files; row counts "
            f"{'match' if pitr['counts_match'] else 'DIFFER from'} the source)")
    if logical:
        row("(3) logical: restore_into of a nightly-backup of the same database",
            f"{logical['wall']:.1f} s (backup {logical['size'] / MIB:.1f} MiB)"
            + (f"; physical/logical = {pitr['wall'] / logical['wall']:.2f}x" if pitr else ""))
    rows += [f"| {name} | not measured | - | **ERROR**: {text.replace('|', '/')} |" for name, text in errors.items()]
    notes = (f"--size-mb {args.size_mb}: database {m.get('db_mb', 0):.0f} MB (pg_database_size); rows changed: "
             f"{m.get('rows')}. Base and incrementals hold the whole "
             "cluster. Stored = every object of the backup. MB = 10^6 bytes, MiB = 2^20.")
    return "\n".join(rows + ["", notes])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=450, help="database size (default 450)")
    parser.add_argument("--rounds", type=int, default=3, help="backups per pattern, medians reported (default 3)")
    parser.add_argument("--load-seconds", type=float, default=180, help="RPO write load duration (default 180)")
    parser.add_argument("--workdir", help="parent of the scratch folder (default: system temp), traversable by all")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ubertruck-bench-incr-", dir=args.workdir))
    root.chmod(0o755)  # the PostgreSQL server runs as an unprivileged user under root
    os.environ["PREFECT_HOME"] = str(root / "prefect")  # keep the operator's Prefect home untouched
    os.environ["UBERTRUCK_STATE_DIR"] = str(root / "state")  # and its state: the WAL spool goes with the server
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    m, clock = {"cleanup": [], "errors": {}}, time.monotonic()
    try:
        measure(root, args, m)
    finally:  # the streamer (before its server), the server, every file
        for undo in reversed(m.pop("cleanup")):
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - keep cleaning
                print(f"cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nbenchmark finished in {time.monotonic() - clock:.0f} s\n")
    print(report(m, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

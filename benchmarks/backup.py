"""Benchmark: nightly-backup's database step against a raw pipeline and the deployment guide's way.

One run builds a sandbox (embedded PostgreSQL 18 on 127.0.0.1, ~--size-mb MB of Ubertruck
data) and measures wall time and stored size of:
  (a) raw:   pg_dump -Fc -Z0 | zstd -1 -T2 | gpg --symmetric AES256 --compress-algo none > file
  (b) guide: pg_dump --format=custom --compress=9 > file.dump; gpg --symmetric (default
             compression) file.dump; copy the .gpg into a repository folder; rm the plaintext
  (c) ours:  the nightly-backup flow (blocks in a throwaway Prefect server: prefect_test_harness)
             and its dump-database task call, timed by wrapping `tasks.dump.dump_database`
  (c') ours: that task (`dump_database.fn` in open_snapshot and gpg_session, as the flow does)
             in a fresh Python process: peak RSS of that process (ru_maxrss; its pg_dump, zstd
             and gpg children excluded), again once the database has grown to twice its size
  (d) raw restore: gpg -d | zstd -d | pg_restore of (a)'s file into a fresh database
  (e) ours:  operations.logical_restore.restore_into (roles, new database, pg_restore, row-count check)
and prints a Markdown table against the goals: (c) <= 1.2x (a); (c) >= 5x faster than (b);
(c) stored <= (b); peak RSS <= 250 MB and < 10% growth when the database doubles;
(e) <= 1.3x (d). Wall times are the best of --repeat runs, all listed under the table ((d) and
(e) alternate, so background load hits both alike). Exit status 0 whatever the verdicts (it is
a measurement). Passphrases reach gpg via a pipe fd, never argv. All it starts is removed at exit.

    .venv/bin/python benchmarks/backup.py [--size-mb 450] [--repeat 3] [--workdir DIR]   # 30: smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB, MIB, RSS_LIMIT_MB, GROWTH_LIMIT_PCT = 1_000_000, 1 << 20, 250, 10.0


def run_chain(stages, out=subprocess.DEVNULL) -> None:
    """Run [(argv, extra_env, fds_to_pass)] chained stdout->stdin, the last into `out`; raise on any failure."""
    procs, errs, previous = [], [], subprocess.DEVNULL
    for index, (argv, extra_env, fds) in enumerate(stages):
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, stdin=previous, stdout=out if index == len(stages) - 1 else subprocess.PIPE,
                                stderr=err, env={**os.environ, **extra_env}, pass_fds=fds)
        for fd in fds:
            os.close(fd)
        if procs:
            procs[-1].stdout.close()  # so the upstream sees SIGPIPE if this stage dies
        procs, errs, previous = procs + [proc], errs + [err], proc.stdout
    for (argv, _, _), proc, err in zip(stages, procs, errs):
        if proc.wait() != 0:
            err.seek(0)
            raise RuntimeError(f"{Path(argv[0]).name} exited {proc.returncode}: {err.read().decode()[-1500:]}")


def timed(call, *args):
    clock = time.monotonic()
    result = call(*args)
    return time.monotonic() - clock, result


def best_of(repeat: int, samples: dict, key: str, call, *args):
    """Run call(*args) `repeat` times; keep every wall time in samples[key]; return (fastest, last result)."""
    for _ in range(repeat):
        wall, result = timed(call, *args)
        samples.setdefault(key, []).append(wall)
    return min(samples[key]), result


def raw_backup(db, secret: str, gpg: list[str], out: Path) -> int:
    from ubertruck_ops.tasks.execute import secret_fd  # os.pipe() holding the passphrase, for --passphrase-fd
    from ubertruck_ops.tasks.postgres import tool
    fd = secret_fd(secret)
    with open(out, "wb") as handle:
        run_chain([([tool("pg_dump"), "-Fc", "-Z0"], db.libpq_env(), ()),
                   (["zstd", "-1", "-T2", "-q", "-c"], {}, ()),
                   (gpg + ["--symmetric", "--cipher-algo", "AES256", "--compress-algo", "none",
                           "--passphrase-fd", str(fd)], {}, (fd,))], out=handle)
    return out.stat().st_size


def guide_backup(db, secret: str, gpg: list[str], work: Path) -> int:
    from ubertruck_ops.tasks.execute import secret_fd
    from ubertruck_ops.tasks.postgres import tool
    dump, repository = work / "db.dump", work / "repository"
    repository.mkdir(parents=True, exist_ok=True)
    with open(dump, "wb") as handle:
        run_chain([([tool("pg_dump"), "--format=custom", "--compress=9"], db.libpq_env(), ())], out=handle)
    fd = secret_fd(secret)
    run_chain([(gpg + ["--yes", "--cipher-algo", "AES256", "--passphrase-fd", str(fd), "--output", f"{dump}.gpg",
                       "--symmetric", str(dump)], {}, (fd,))])
    shutil.copy(f"{dump}.gpg", repository)
    dump.unlink()
    return (repository / "db.dump.gpg").stat().st_size


def admin_sql(server, *statements: str) -> None:
    import psycopg
    with psycopg.connect(**server.connect_kwargs(), autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)


def raw_restore(server, database: str, secret: str, gpg: list[str], source: Path) -> None:
    from ubertruck_ops.tasks.execute import secret_fd
    from ubertruck_ops.tasks.postgres import tool
    admin_sql(server, f'CREATE DATABASE "{database}"')
    fd = secret_fd(secret)
    run_chain([(gpg + ["--passphrase-fd", str(fd), "--decrypt", str(source)], {}, (fd,)),
               (["zstd", "-d", "-q", "-c"], {}, ()),
               ([tool("pg_restore"), "--exit-on-error", "--no-password", f"--dbname={database}"],
                server.libpq_env(database), ())])


def worker() -> None:
    """(c'): one dump-database step in this fresh process; print its wall time, size and our peak RSS."""
    import psutil
    from prefect.testing.utilities import prefect_test_harness

    from ubertruck_ops.tasks import dump, postgres
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.repository import open_repository
    payload = pickle.load(sys.stdin.buffer)
    env, me, stop = payload["env"], psutil.Process(), threading.Event()
    with prefect_test_harness():  # the task writes progress artifacts: it needs an API
        peak = [before := me.memory_info().rss]

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], me.memory_info().rss)

        threading.Thread(target=sample, daemon=True).start()
        clock = time.monotonic()
        with gpg_session(env.encryption) as gpg, postgres.open_snapshot(env.database) as snapshot:
            stored = dump.dump_database.fn(env.database, snapshot, gpg, open_repository(env.repository),
                                           payload["folder"])
        wall = time.monotonic() - clock
        stop.set()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print("RESULT " + json.dumps({"wall": wall, "size": stored.size, "rss_before": before,
                                  "rss_step_peak": peak[0], "maxrss": maxrss}))


def step_in_fresh_process(env, folder: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker"], input=pickle.dumps({"env": env, "folder": folder}),
                          capture_output=True, timeout=6 * 3600)
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr.decode()[-3000:]}")
    shutil.rmtree(Path(env.repository.url) / folder, ignore_errors=True)
    return json.loads(lines[-1][7:])


def ours(sandbox, repeat: int, samples: dict, raw_restore_once) -> dict:
    """(c) nightly-backup runs, their database step timed; then (e) restore_into alternating with (d)."""
    from prefect.testing.utilities import prefect_test_harness

    from ubertruck_ops.blocks.environment import save_environment
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.operations.logical_restore import restore_into
    from ubertruck_ops.tasks import catalog, dump, load
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.repository import open_repository
    env, server, original = sandbox.env, sandbox.server.database(), dump.dump_database
    drop_targets = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in ("bench_raw", "bench_ours")]

    def timed_dump(*args, **kwargs):
        clock = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            samples.setdefault("(c) step", []).append(time.monotonic() - clock)

    with prefect_test_harness():
        save_environment(env, "bench")
        ensure_concurrency_limits()
        dump.dump_database = timed_dump  # this process only: the flow looks it up at call time
        try:
            flow_wall, result = best_of(repeat, samples, "(c) flow", nightly_backup, "bench")  # raises on failure
        finally:
            dump.dump_database = original
        repo = open_repository(env.repository)
        manifest = catalog.find_backup(repo, result["backup_id"])
        with gpg_session(env.encryption, for_restore=True) as gpg:
            roles = load.read_roles(repo, manifest, gpg)
            for _ in range(repeat):  # each starts with both targets absent, dropped outside the clock
                admin_sql(server, *drop_targets)
                samples.setdefault("(d)", []).append(raw_restore_once())
                samples.setdefault("(e)", []).append(timed(restore_into, server, "bench_ours", manifest, repo, gpg,
                                                           roles)[0])
    admin_sql(server, *drop_targets)
    return {"flow": flow_wall, "step": min(samples["(c) step"]), "size": result["objects"][dump.DATABASE_OBJECT],
            "restore": min(samples["(e)"])}


def measure(sandbox, root: Path, size_mb: int, repeat: int) -> dict:
    import psycopg

    from ubertruck_ops.sandbox import data
    env, server, samples = sandbox.env, sandbox.server.database(), {}

    def database_mb() -> float:
        with psycopg.connect(**env.database.connect_kwargs()) as conn:
            return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / MB

    secret, home = env.encryption.passphrase.get_secret_value(), root / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback"]
    m = {"db_mb": database_mb(), "samples": samples}
    print(f"sandbox ready: {m['db_mb']:.0f} MB database; (a) raw pipeline, (b) the guide's way", flush=True)
    m["a"] = best_of(repeat, samples, "(a)", raw_backup, env.database, secret, gpg, root / "raw.dump.zst.gpg")
    m["b"] = best_of(repeat, samples, "(b)", guide_backup, env.database, secret, gpg, root / "guide")
    print("(c) nightly-backup flow, then (d) raw restore and (e) restore_into, alternating", flush=True)
    m["c"] = ours(sandbox, repeat, samples,
                  lambda: timed(raw_restore, server, "bench_raw", secret, gpg, root / "raw.dump.zst.gpg")[0])
    m["d"] = min(samples["(d)"])
    print(f"(c') database step in a fresh process (peak RSS), then again at ~{2 * size_mb} MB", flush=True)
    m["mem1"] = step_in_fresh_process(env, "bench-mem-1")
    with psycopg.connect(**env.database.connect_kwargs()) as conn:
        data.generate(conn, 2 * size_mb, seed=0.77)  # another seed: no repeated random keys
    m["db2_mb"] = database_mb()
    m["mem2"] = step_in_fresh_process(env, "bench-mem-2")
    return m


def report(m: dict, size_mb: int) -> str:
    (a_wall, a_size), (b_wall, b_size), c = m["a"], m["b"], m["c"]
    rows = ["| step | wall s | stored MiB | vs (a) | vs (b) | goal | result |", "|---|---:|---:|---:|---:|---|---|"]

    def row(step, wall, size, goal, ok=None, ratios=True):
        vs_a, vs_b = (f"{wall / a_wall:.2f}x", f"{wall / b_wall:.2f}x") if ratios else ("-", "-")
        verdict = "-" if ok is None else ("PASS" if ok else "**FAIL**")
        stored = f"{size / MIB:.2f}" if size is not None else "-"
        rows.append(f"| {step} | {wall:.1f} | {stored} | {vs_a} | {vs_b} | {goal} | {verdict} |")

    row("(a) raw pg_dump -Z0 \\| zstd -1 -T2 \\| gpg", a_wall, a_size, "reference")
    row("(b) guide: pg_dump -Z9 > file; gpg file; copy; rm", b_wall, b_size, "reference")
    for goal, ok in (("wall <= 1.2x (a)", c["step"] <= 1.2 * a_wall),
                     (f">= 5x faster than (b) (is {b_wall / c['step']:.1f}x)", b_wall >= 5 * c["step"]),
                     (f"stored <= (b) (is {c['size'] / b_size:.3f}x)", c["size"] <= b_size)):
        row("(c) nightly-backup database step (in the flow)", c["step"], c["size"], goal, ok)
    row("(c) whole nightly-backup flow (db + roles + files + manifest)", c["flow"], None, "information")
    for key, label in (("mem1", m["db_mb"]), ("mem2", m["db2_mb"])):
        rss = m[key]["maxrss"] / MB
        row(f"(c') database step, fresh process, {label:.0f} MB database", m[key]["wall"], m[key]["size"],
            f"peak RSS {rss:.0f} MB <= {RSS_LIMIT_MB} MB", rss <= RSS_LIMIT_MB)
    growth = 100 * (m["mem2"]["maxrss"] / m["mem1"]["maxrss"] - 1)
    verdict = "PASS" if growth < GROWTH_LIMIT_PCT else "**FAIL**"
    rows.append(f"| (c') peak RSS growth, {m['db_mb']:.0f} -> {m['db2_mb']:.0f} MB database | - | - | - | - | "
                f"growth {growth:+.1f}% < {GROWTH_LIMIT_PCT:.0f}% | {verdict} |")
    row("(d) raw gpg -d \\| zstd -d \\| pg_restore of (a)", m["d"], None, "reference", ratios=False)
    row("(e) restore_into of (c)'s backup (incl. row-count check)", c["restore"], None,
        f"<= 1.3x (d) (is {c['restore'] / m['d']:.2f}x)", c["restore"] <= 1.3 * m["d"], ratios=False)
    notes = [f"--size-mb {size_mb}: database {m['db_mb']:.0f} MB (pg_database_size), grown to {m['db2_mb']:.0f} MB "
             "for the memory pair. MB = 10^6 bytes, MiB = 2^20. Exit status 0 whatever the verdicts.",
             "Wall seconds of every run (the table shows the fastest): " + "; ".join(
                 f"{key} " + ", ".join(f"{wall:.1f}" for wall in walls) for key, walls in m["samples"].items())]
    notes += [f"(c') at {label:.0f} MB: RSS before the step {mem['rss_before'] / MB:.0f} MB, sampled peak during it "
              f"{mem['rss_step_peak'] / MB:.0f} MB (+{(mem['rss_step_peak'] - mem['rss_before']) / MB:.1f} MB), "
              f"ru_maxrss {mem['maxrss'] / MB:.0f} MB." for mem, label in ((m["mem1"], m["db_mb"]),
                                                                           (m["mem2"], m["db2_mb"]))]
    return "\n".join(rows + [""] + notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=450, help="sandbox database size (default 450)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step, the fastest counts (default 3)")
    parser.add_argument("--workdir", help="parent of the scratch folder (default: the system temp folder); under "
                        "root it must be traversable by all, as PostgreSQL runs unprivileged")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker() or 0
    root = Path(tempfile.mkdtemp(prefix="ubertruck-bench-", dir=args.workdir))
    root.chmod(0o755)  # the PostgreSQL server runs as an unprivileged user under root
    os.environ["PREFECT_HOME"] = str(root / "prefect")  # keep the operator's Prefect home untouched
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from throwaway servers
    from ubertruck_ops.sandbox.environment import Sandbox
    sandbox = Sandbox(root / "sandbox", args.size_mb)
    clock = time.monotonic()
    try:
        print(f"building a ~{args.size_mb} MB sandbox in {root}", flush=True)
        sandbox.start(save_as=None)
        results = measure(sandbox, root, args.size_mb, max(1, args.repeat))
    finally:  # the raw runs' gpg-agent, the sandbox's PostgreSQL, every file
        subprocess.run(["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"], capture_output=True)
        sandbox.destroy()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nbenchmark finished in {time.monotonic() - clock:.0f} s\n")
    print(report(results, args.size_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())

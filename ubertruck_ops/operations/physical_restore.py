"""Physical (point-in-time) restore: the steps `restore(method="physical")` and the drill share.

The story: pick the chain that ends before the target time; verify every object of it;
refuse when the WAL between the chain's end and the target time has a gap; extract the
chain, rebuild one data directory with pg_combinebackup, stage the WAL it needs; start a
server of its own on its own port that replays WAL up to the target and promotes; verify
it answers and is out of recovery.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.names import shell_safe_path
from ubertruck_ops.core.physical import plan_wal
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import catalog, load, physical, postgres, wal
from ubertruck_ops.tasks.crypto import GpgSession
from ubertruck_ops.tasks.leftovers import claim_folder
from ubertruck_ops.tasks.repository import Repository
from ubertruck_ops.tasks.scratch_postgres import LocalServer, make_traversable_parents


def restore_physical(repo: Repository, gpg: GpgSession, target_time: datetime | None, workdir: Path | None,
                     keep_running: bool, known_roles: tuple[str, ...] = (), scratch: bool = False) -> dict:
    """Rebuild and start a cluster from the physical chain; return where it is and what it holds.

    The cluster is byte-faithful: its roles, passwords and pg_hba.conf stay as backed up (the server
    is reached through hba/ident files of its own, outside the data directory). `known_roles` are
    roles that exist in it (the backup's login), used to find its bootstrap superuser.
    `scratch` (a drill; without `workdir` and `keep_running`): the folder records this process as its
    owner and the server dies with it, so nothing of a killed drill stays running or stays for good.
    Raise ValueError when `workdir` holds characters a shell would interpret, before anything is made.
    """
    log = logger()
    if workdir is not None:
        workdir = Path(shell_safe_path(workdir, "restore_folder"))
    chain = catalog.find_physical_chain(repo, target_time)
    last = chain[-1]
    # A data directory starts only under its own major: the chain's, found on this host or named.
    bin_dir = postgres.server_bin_dir(int(last.database["server_version"]) // 10000)
    log.info("restoring chain %s", " -> ".join(m.backup_id for m in chain))
    for manifest in chain:
        load.verify_objects(repo, manifest)
    wal_files = plan_wal(last, wal.archived_files(repo), target_time)

    if scratch and (workdir is not None or keep_running):
        raise ValueError("a scratch restore makes its own folder and does not keep its server running")
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise FileExistsError(f"{workdir} is not empty: give an empty or new folder as restore_folder")
    if workdir is None:
        workdir = claim_folder("ubertruck-restore-") if scratch else Path(tempfile.mkdtemp(prefix="ubertruck-restore-"))
    make_traversable_parents(workdir)   # parents the server user must pass through, even under umask 077
    workdir.mkdir(exist_ok=True, mode=0o700)
    workdir.chmod(0o700)   # decrypted data and WAL land here: nobody else may read them
    try:
        return _rebuild_and_start(repo, gpg, chain, wal_files, workdir, bin_dir, target_time, keep_running,
                                  known_roles, scratch)
    except BaseException:
        # Nothing half-restored stays behind: the folder was empty or new, so all in it is ours.
        if scratch:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        for item in workdir.iterdir():
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        raise


def _rebuild_and_start(repo: Repository, gpg: GpgSession, chain: list[Manifest], wal_files: list[str], workdir: Path,
                       bin_dir: Path, target_time: datetime | None, keep_running: bool,
                       known_roles: tuple[str, ...], scratch: bool = False) -> dict:
    log = logger()
    last = chain[-1]
    data = workdir / "data"
    parts = []
    for index, manifest in enumerate(chain):
        part = workdir / "chain" / f"{index:02d}-{manifest.kind}"
        load.extract_object(repo, manifest, "data", gpg, part)
        parts.append(part)
    if len(parts) == 1:
        parts[0].rename(data)
    else:
        physical.combine(bin_dir, parts, data)
    shutil.rmtree(workdir / "chain", ignore_errors=True)
    fetched = wal.fetch_segments(repo, wal_files, gpg, workdir / "wal")
    recovery = physical.configure_recovery(data, workdir / "wal", target_time)

    server = LocalServer(bin_dir, workdir, durable=True, settings=recovery, restored=True, known_roles=known_roles,
                         scratch=scratch)
    server.give_to_server_user(workdir, recursive=True)
    server.start()
    try:
        server.wait_until_promoted(timeout=3600)
        with postgres.connect(server.database(), last.database["name"]) as conn:
            counts = postgres.row_counts(conn)
    except BaseException:
        server.stop()
        raise
    if not keep_running:
        server.stop()
    log.info("restored cluster in %s (%s WAL files, %d bytes replayed)", data, len(wal_files), fetched)
    return {"chain": [m.backup_id for m in chain], "data_directory": str(data), "port": server.port,
            "running": keep_running, "wal_files": len(wal_files), "row_counts": counts, "server": server}

"""Files: tar the application folder and config files, and extract archives on restore."""

from __future__ import annotations

import os
from pathlib import Path

from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.tasks.execute import Stage, require_tool

TAR_INSTALL = "apt-get install -y tar"


def app_archive_stage(block: ArchiveSources) -> Stage | None:
    """Return the tar stage for the application folder, or None when it is not there."""
    if not block.app_root or not Path(block.app_root).is_dir():
        return None
    argv = [require_tool("tar", TAR_INSTALL), "--create", "--file=-", f"--directory={block.app_root}"]
    argv += [f"--exclude={name}" for name in block.excludes]
    return Stage("tar (app)", argv + ["."])


def present_config_files(block: ArchiveSources) -> tuple[list[str], list[str]]:
    """Return (present, missing) config files. Missing ones are reported, not fatal."""
    present = [p for p in block.config_files if os.path.isfile(p)]
    return present, [p for p in block.config_files if p not in present]


def config_archive_stage(paths: list[str]) -> Stage:
    # Relative to / so that extraction into a chosen folder cannot write outside it.
    relative = [p.lstrip("/") for p in paths]
    return Stage("tar (config)", [require_tool("tar", TAR_INSTALL), "--create", "--file=-", "--directory=/", *relative])


def extract_stage(destination: str) -> Stage:
    """tar refuses members with '..' or absolute names by default, so nothing escapes `destination`."""
    return Stage("tar (extract)", [require_tool("tar", TAR_INSTALL), "--extract", "--file=-",
                                   f"--directory={destination}", "--no-same-owner"])

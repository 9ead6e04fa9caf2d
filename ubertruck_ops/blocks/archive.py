"""What the nightly backup archives besides the database."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from ubertruck_ops.blocks.app import AppHost, default_of
from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass


class ArchiveSources(SchemaOncePerClass, Block):
    """The application files and configuration files to archive (the guide's app_ and config_ tarballs)."""

    _block_type_name = "Ubertruck Archive Sources"
    _block_type_slug = "ubertruck-archive-sources"
    _description = "Application folder and config files the nightly backup archives, encrypted."

    app_root: str | None = Field(default=default_of(AppHost, "app_root"), title="Application root",
                                 description="Folder archived as app.tar; empty to skip.")
    excludes: list[str] = Field(default_factory=lambda: ["node_modules", ".git"], title="Excluded names",
                                description="File or folder names left out of the application archive.")
    config_files: list[str] = Field(default_factory=list, title="Config files",
                                    description="Absolute paths archived as config.tar (nginx site, env file, PM2 ecosystem).")

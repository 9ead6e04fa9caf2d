"""The app hosts of an environment, when there are several behind a load balancer."""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass

_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


class AppFleet(SchemaOncePerClass, Block):
    """The app hosts a rolling deploy goes over, in order. Each host runs its own Prefect worker on
    the work queue `app-host-<name>` and may have its own app block `<env>-app-<name>` (else the
    environment's `<env>-app`: the same folders on every host)."""

    _block_type_name = "Ubertruck App Hosts"
    _block_type_slug = "ubertruck-app-hosts"
    _description = "The app hosts behind the load balancer, in rolling order, and how many switch at once."

    hosts: list[str] = Field(title="Hosts", description="Host names in rolling order (APP_HOSTS, comma-separated).")
    hosts_at_once: int = Field(default=1, ge=1, title="Hosts at once",
                               description="How many hosts leave the balancer and switch together (APP_HOSTS_AT_ONCE).")
    worker_seen_seconds: float = Field(default=120, gt=0, title="Worker seen within (s)",
                                       description="A host whose queue no worker polled for this long counts as down.")
    host_run_timeout_seconds: float = Field(default=1800, gt=0, title="Host step timeout (s)",
                                            description="How long the rolling deploy waits for one host's step.")

    @field_validator("hosts")
    @classmethod
    def _named_hosts(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("at least one host is needed")
        for host in hosts:
            if not _HOST.fullmatch(host):
                raise ValueError(f"host name {host!r} must be lowercase letters, digits and dashes (up to 40)")
        if len(set(hosts)) != len(hosts):
            raise ValueError("a host is named twice")
        return hosts

    def queue(self, host: str) -> str:
        """The Prefect work queue of `host`'s worker."""
        return f"app-host-{host}"

"""The web server in front of the frontend: run the configured reload command (nginx)."""

from __future__ import annotations

import shlex

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.tasks.execute import run


@task(name="reload-web-server", cache_policy=NO_CACHE)
def reload_web_server(app: AppHost) -> bool:
    """Run NGINX_RELOAD_COMMAND (split like a shell would, never through one); return False when
    none is configured. Raise CommandFailed with its stderr when it fails."""
    if not app.nginx_reload_command:
        return False
    run(shlex.split(app.nginx_reload_command), timeout=60)
    return True

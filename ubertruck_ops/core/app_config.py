"""The services' configuration on a host: which names are allowed, what each process gets, and which
version of the configuration a switch runs. Pure functions.

A host keeps each configuration that went live as a numbered version (APP_ROOT/shared/config/<n>.json,
private to the app's user). A release runs under PM2 as `<service>@<tag>+c<n>`: a configuration
change is a new app that takes over the port like a new release does, and what runs always says
which configuration it has - without a hash of secret values in a name or a log.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the deploy for every service process: the file's own values for these are replaced.
DEPLOY_OWNED = ("NODE_ENV", "PORT", "UBERTRUCK_RELEASE")


def config_problems(values: dict) -> list[str]:
    """Given the variables of a configuration, return what is wrong with them, by name (never a value):
    a name that is not an environment variable name, a value that is not text, a number or a boolean,
    a value holding a NUL byte. Empty: usable."""
    problems = []
    for name, value in values.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{name!r} is not an environment variable name (letters, digits and _, "
                            "not starting with a digit)")
        elif isinstance(value, dict | list | tuple) or value is None:
            problems.append(f"{name}: the value must be text, a number or true/false")
        elif "\0" in str(value):
            problems.append(f"{name}: the value holds a NUL byte")
    return problems


def service_environment(config: dict[str, str], port: int, tag: str, node_env: str = "production") -> dict[str, str]:
    """Given a configuration, one service's port and the release, return that service's environment:
    every variable of the configuration, with NODE_ENV, PORT and UBERTRUCK_RELEASE the deploy's own."""
    return {**{k: v for k, v in config.items() if k not in DEPLOY_OWNED},
            "NODE_ENV": node_env, "PORT": str(port), "UBERTRUCK_RELEASE": tag}


def version_for(values: dict[str, str], versions: dict[int, dict[str, str]],
                taken: frozenset[int] = frozenset()) -> tuple[int, bool]:
    """Given a configuration, the versions a host keeps (number -> variables) and numbers taken by
    versions it cannot read (damaged: never reused, never overwritten), return the version that holds
    it and whether it is new: the newest equal version, else one past the highest number.
    An empty configuration on a host that never had one is version 0 (apps named as before versions)."""
    for number in sorted(versions, reverse=True):
        if versions[number] == values:
            return number, False
    if not values and not versions and not taken:
        return 0, False
    return max({*versions, *taken}, default=0) + 1, True


def versions_to_prune(versions: list[int], keep: set[int], newest: int) -> list[int]:
    """Given the versions on a host, those still needed (live, and what a rollback or put-back may
    run) and how many of the newest to keep, return the versions to delete, oldest first."""
    kept = set(sorted(versions)[-newest:]) if newest > 0 else set()
    return sorted(v for v in versions if v not in kept and v not in keep and v != 0)


def config_label(version: int) -> str:
    """How a configuration version reads in notices and the history: "configuration 3"."""
    return f"configuration {version}" if version else "no configuration"

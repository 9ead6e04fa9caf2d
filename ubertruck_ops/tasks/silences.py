"""Silences live in a Prefect variable per environment (`ubertruck_<env>_silences`), so the CLI,
`watch`, the flows on any worker and an operator in the UI (Variables) all read and write the same
list. The variable holds {"silences": [{"id", "environment", "starts", "ends", "reason", "target",
"created_by", "announced_end"}, ...]}, times in ISO 8601 with a UTC offset. core/alerts.py decides
what a silence covers; this module only reads and writes the list."""

from __future__ import annotations

from prefect.variables import Variable

from ubertruck_ops.core.alerts import Silence
from ubertruck_ops.log import logger


def variable_name(environment: str) -> str:
    return f"ubertruck_{environment}_silences".replace("-", "_")


def read_silences(environment: str) -> list[Silence]:
    """The environment's silences; an entry that cannot be read is logged and left out (never
    silences anything), and an unreadable variable reads as no silence at all."""
    try:
        value = Variable.get(variable_name(environment), default=None)
    except Exception as exc:  # noqa: BLE001 - no API answering: nothing is silenced, alerts go out
        logger().warning("could not read the silences of %s (%s): alerts are not silenced", environment,
                         type(exc).__name__)
        return []
    entries = value.get("silences", []) if isinstance(value, dict) else []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            silence = Silence.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            logger().warning("a silence of %s cannot be read and is ignored (%s): %r", environment, exc, entry)
            continue
        if silence.environment == environment:
            found.append(silence)
    return found


def write_silences(environment: str, silences: list[Silence]) -> None:
    Variable.set(variable_name(environment), {"silences": [s.to_dict() for s in silences]}, overwrite=True)

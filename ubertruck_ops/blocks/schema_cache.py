"""The JSON schema of a block class, built once per process.

Prefect rebuilds a block's JSON schema with pydantic on every save, load and checksum, several
times per call (which fields are secrets, the schema checksum, the nested references); for our
composite blocks each build costs milliseconds, and a profile of the test suite found a fifth of a
worker's CPU there. The schema depends on the class and the arguments only, so one build per class
and arguments is enough; callers get their own copy, because Prefect edits the dict it is given.
"""

from __future__ import annotations

import copy
from typing import Any

_BUILT: dict[tuple, dict[str, Any]] = {}


class SchemaOncePerClass:
    """Mixin before `Block` in a block class's bases: `model_json_schema` is built once per class."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _BUILT:
            _BUILT[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(_BUILT[key])

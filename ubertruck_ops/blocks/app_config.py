"""The services' configuration: the guide's .env.production (DATABASE_URL, REDIS_URL, JWT_SECRET, the
SMS and maps keys, feature flags), every value a secret, given to every service process of a release."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, field_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass
from ubertruck_ops.core.app_config import config_problems


class AppConfiguration(SchemaOncePerClass, Block):
    """The environment variables of every service (the guide's .env.production). `blocks init` reads them
    from APP_ENV_FILE; the UI edits them as JSON. A change goes live with the `reconfigure` flow (or the
    next deploy); PORT and NODE_ENV are the deploy's own (each service's port from APP_SERVICES)."""

    _block_type_name = "Ubertruck App Configuration"
    _block_type_slug = "ubertruck-app-configuration"
    _description = ("The services' environment variables (.env.production), every value secret: given to each "
                    "service process by the deploy, never on a command line.")

    values: SecretDict = Field(default_factory=lambda: SecretDict({}), title="Variables",
                               description="NAME -> value for every service process (APP_ENV_FILE). Run the "
                                           "reconfigure flow after a change.")

    @field_validator("values")
    @classmethod
    def _names_and_text(cls, value: SecretDict) -> SecretDict:
        problems = config_problems(value.get_secret_value())
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def variables(self) -> dict[str, str]:
        """The variables as text, for the services' environment."""
        return {name: str(value) for name, value in self.values.get_secret_value().items()}

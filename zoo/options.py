"""Base model for every options/spec object: strict (unknown keys rejected) and immutable."""
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """Strict, frozen pydantic model. Subclass it for a component's options.

    Every field should have a default, bounds where they make sense, and a ``description``: ``zoo list``
    prints them, and a typo in a config file is an error, not a silently ignored key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

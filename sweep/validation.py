"""Config errors a user can act on: the setting, the bad value, what is valid.

Every component checks its own settings when Hydra instantiates it, which the
job does before loading data or opening an MLflow run.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A setting has a value the tool cannot use."""


def require(condition: bool, setting: str, value: Any, valid: str) -> None:
    """Raise a ConfigError naming ``setting`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{setting}={value!r} is not valid: expected {valid}.")

"""Where things go: everything a run writes lives under one outputs folder.

Paths are resolved from the project root, never from the working directory of
a job, so every job of a sweep (and the ranking CLI) finds the same store and
cache. ``SWEEP_OUTPUTS`` moves the whole folder (tests point it at tmp_path).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def outputs_root() -> Path:
    """The outputs folder: ``$SWEEP_OUTPUTS`` or ``<project>/outputs``."""
    configured = os.environ.get("SWEEP_OUTPUTS")
    return Path(configured).expanduser().resolve() if configured else PROJECT_ROOT / "outputs"


def default_tracking_uri() -> str:
    return f"sqlite:///{outputs_root() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """An absolute MLflow URI: servers as given, local stores made absolute."""
    if not uri:
        return default_tracking_uri()
    if "://" in uri and not uri.startswith(("sqlite:///", "file://")):
        return uri  # http(s), databricks, postgresql+...: the server decides
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return f"sqlite:///{Path(path).expanduser().resolve()}"
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).expanduser().resolve().as_uri()
    return Path(uri).expanduser().resolve().as_uri()


def register_resolvers() -> None:
    """``${sweep_outputs:}``, used by conf/config.yaml for Hydra's run and sweep folders."""
    OmegaConf.register_new_resolver("sweep_outputs", lambda: str(outputs_root()), replace=True)


def local_store_path(uri: str) -> Path | None:
    """The file a local MLflow URI writes to (None for a server)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None


def check_inside_outputs(path: Path | str, setting: str, allowed: bool) -> None:
    """Refuse to write outside the outputs folder unless the user allowed it.

    A shared experiment YAML should not be able to make a sweep write into a
    user's home or system folders by accident; ``allow_outside_outputs=true``
    is the explicit "yes, I mean it".
    """
    from sweep.settings import ConfigError

    resolved, root = Path(path).expanduser().resolve(), outputs_root()
    if allowed or resolved == root or root in resolved.parents:
        return
    raise ConfigError(
        f"{setting}={str(path)!r} writes outside the outputs folder {root}: "
        "move it under that folder, set SWEEP_OUTPUTS, or add allow_outside_outputs=true."
    )


def browse_hint(uri: str) -> str:
    """The command that shows a store in the MLflow UI (loopback only)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"

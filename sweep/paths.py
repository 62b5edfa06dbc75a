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

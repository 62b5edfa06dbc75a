"""Paths, config composition and direct runtime checks shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
QUANTIZERS = ("none", "dynamic_range", "float16", "int8", "int8_fallback", "int16x8")


def compose(overrides: list[str] | None = None, with_hydra: bool = False):
    """The job config as Hydra composes it for ``python -m sweep <overrides>``.

    ``with_hydra`` keeps Hydra's own block (launcher, sweeper) in the result.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweep.stores.paths import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=with_hydra)


def sweep_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a ``python -m sweep`` subprocess writing only into tmp_path."""
    return {
        **os.environ,
        "SWEEP_OUTPUTS": str(tmp_path / "outputs"),
        "SWEEP_DATA_DIR": str(DATA),
        "HYDRA_FULL_ERROR": "0",
    }


def tflm_invokes(model: bytes, arena: int) -> bool:
    """Ask the tflite-micro interpreter itself, not sweep.runtimes.tflm."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        detail = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(tuple(detail["shape"]), detail["dtype"]), 0)
        interpreter.invoke()
    except RuntimeError:
        return False
    return True


def composed_target(name: str, *overrides: str):
    """The target ``name`` as a sweep instantiates it: composed from conf/ with its CPU's
    base and these overrides (``target.emulate_images=3``), checked."""
    from sweep.pipeline.components import instantiate_group

    return instantiate_group("target", compose([f"target={name}", *overrides]).target)[0]

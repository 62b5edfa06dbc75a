"""Where a job stands: alone, or job n of a sweep identified by its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

INVALID_JOB_FILE = "invalid-settings.txt"
"""Left in a sweep job's folder when a bad per-job setting stopped it before any run."""
FIXED_SETTINGS_TAG = "sweep.fixed_settings"
"""Tag of a sweep's parent run: the settings every job of the sweep gets (``knob_settings``
with the seed), so a job can name its run by the settings that vary."""


@dataclass(frozen=True)
class JobContext:
    sweep_id: str | None = None  # the sweep folder's absolute path; None outside a multirun
    job_num: int = 0
    total: int | None = None  # filled in from the parent run when known
    settings: str = ""  # the job's command-line settings other than group choices and seed
    overrides: tuple[str, ...] = ()  # the job's command-line overrides, as Hydra gives them

    @property
    def progress(self) -> str:
        if self.sweep_id is None:
            return "[job]"
        return f"[{self.job_num + 1}/{self.total or '?'}]"


def sweep_id_for(sweep_dir: str | Path) -> str:
    """Identify a sweep by its folder, so a re-run into the same folder resumes it."""
    return str(Path(sweep_dir).expanduser().resolve())


def knob_settings(overrides: list[str], groups: tuple[str, ...], seed: bool = False) -> str:
    """``model=cnn pretrain.final_sparsity=0.9 seed=1`` → ``pretrain.final_sparsity=0.9``.

    What tells two runs of the same component sequence apart (besides the seed,
    which makes replicates): the ranking must not pool them as replicates. ``seed=True``
    keeps the seed (a run's name tells replicates apart too).
    """
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in groups or key == "experiment" or key.startswith("hydra"):
            continue
        if key == "seed" and not seed:
            continue
        kept.append(override)
    return " ".join(sorted(kept))


def distinct_settings(settings: str, shared: set[str]) -> str:
    """The ``key=value`` tokens of ``settings`` that are not ``shared`` by every run compared:
    what sets a run apart (the ranking's variant, and a run's name in a sweep)."""
    return " ".join(sorted(set(settings.split()) - shared))


def named(label: str, settings: str) -> str:
    """``mnist · cnn · fit · none → int8 [model.filters=8]``: a sequence and what sets it apart."""
    return f"{label} [{settings}]" if settings else label


def current(groups: tuple[str, ...] = ()) -> JobContext:
    """The context Hydra gives this job (none when called outside Hydra, as tests do)."""
    if not HydraConfig.initialized():
        return JobContext()
    hydra_cfg = HydraConfig.get()
    overrides = tuple(hydra_cfg.overrides.task)
    settings = knob_settings(list(overrides), groups)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return JobContext(settings=settings, overrides=overrides)
    return JobContext(
        sweep_id=sweep_id_for(hydra_cfg.sweep.dir),
        job_num=int(hydra_cfg.job.num),
        settings=settings,
        overrides=overrides,
    )

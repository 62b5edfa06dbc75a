"""Instantiate a job's components from their config groups, checking every setting.

Each group option names its class with ``_target_``; the class's typed
dataclass fields and their rules are the schema (:mod:`sweep.settings`), so a
bad value stops the job with one message naming the setting before any data is
loaded or any MLflow run is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.compat import migrate_settings
from sweep.groups import GROUPS, SEQUENCE_KEYS
from sweep.groups.dataset import DatasetSource
from sweep.groups.model import ModelBuilder
from sweep.groups.pretrain import PretrainOptimizer
from sweep.groups.quantize import Quantizer
from sweep.groups.target import Target
from sweep.groups.target_defaults import builds_for_its_cpu
from sweep.groups.train import Trainer
from sweep.run_settings import MeasureSettings, RankSettings, RunSettings
from sweep.runtimes.isolated import first_step_seconds
from sweep.settings import ConfigError, build, check_keys_and_types, check_rules
from sweep.stores.paths import check_inside_outputs, local_store_path, resolve_tracking_uri

RUN_BLOCKS: dict[str, type] = {"measure": MeasureSettings, "rank": RankSettings, "": RunSettings}
"""The run-level blocks and their schemas ("" = the top-level keys)."""


@dataclass
class Components:
    """The instantiated options of one job, and the settings they came from."""

    dataset: DatasetSource
    model: ModelBuilder
    train: Trainer
    pretrain: PretrainOptimizer
    quantize: Quantizer
    target: Target
    measure: MeasureSettings
    settings: dict[str, dict[str, Any]]

    @property
    def sequence(self) -> dict[str, str]:
        return {group: str(getattr(self, group).name) for group in SEQUENCE_KEYS}

    @property
    def label(self) -> str:
        s = self.sequence
        return f"{s['dataset']} · {s['model']} · {s['train']} · {s['pretrain']} → {s['quantize']}"


def instantiate_group(group: str, node: DictConfig) -> tuple[Any, dict[str, Any]]:
    """One group option, built and checked: the object and the settings that define it.

    Keys that moved (:data:`sweep.compat.MOVED_SETTINGS`) are translated first, with a
    warning, so a user's older YAML keeps working.
    """
    settings = OmegaConf.to_container(node, resolve=True)
    if not isinstance(settings, dict) or "_target_" not in settings:
        raise ConfigError(f"{group} has no _target_: pick an option, e.g. {group}=<name>.")
    target = settings.pop("_target_")
    settings = migrate_settings(group, settings)
    try:
        cls = get_class(target)
    except Exception as error:
        raise ConfigError(f"{group}._target_={target!r} cannot be imported: {error}") from None
    check_keys_and_types(group, cls, settings)
    try:
        built = instantiate({"_target_": target, **settings}, _convert_="all")
    except Exception as error:
        cause = error.__cause__ or error
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{group}: {cause}") from None
    check_rules(group, built)
    # The class and its name belong to what the option is: two options whose settings
    # are all defaults (quantize=none and quantize=float16) must never share a cache key.
    return built, {"_target_": target, "name": str(getattr(built, "name", "")), **settings}


def check_write_locations(cfg: DictConfig) -> None:
    """The folders this job would write to must lie under outputs/ (or be allowed)."""
    allowed = bool(cfg.allow_outside_outputs)
    store = local_store_path(resolve_tracking_uri(cfg.tracking.uri))
    if store is not None:
        check_inside_outputs(store, "tracking.uri", allowed)
    if "hydra" in cfg:  # the sweep callback passes the whole config
        check_inside_outputs(cfg.hydra.sweep.dir, "hydra.sweep.dir", allowed)
    elif HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        setting = "hydra.sweep.dir" if hydra_cfg.mode == RunMode.MULTIRUN else "hydra.run.dir"
        check_inside_outputs(hydra_cfg.runtime.output_dir, setting, allowed)
    if builds_for_its_cpu(cfg.get("target") or {}):
        from sweep.runtimes.cortex_m.library import cache_root

        cache_root()  # SWEEP_FIRMWARE_CACHE, where the Cortex-M builds go: checked up front too


def run_blocks(cfg: DictConfig) -> dict[str, Any]:
    """The checked run-level blocks, keyed as :data:`RUN_BLOCKS`."""
    raw = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in RUN_BLOCKS if name}
    raw[""] = {key: OmegaConf.to_container(OmegaConf.create({"v": cfg[key]}))["v"]
               for key in ("seed", "objective", "threads", "allow_outside_outputs")}  # fmt: skip
    return {name: build(name, schema, raw[name]) for name, schema in RUN_BLOCKS.items()}


def instantiate_components(cfg: DictConfig) -> Components:
    """Build every component of the job; raises ConfigError on the first bad setting."""
    built: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        if group not in cfg:
            raise ConfigError(
                f"the config has no '{group}' group: add `- {group}: <option>` to its defaults."
            )
        built[group], settings[group] = instantiate_group(group, cfg[group])
    blocks = run_blocks(cfg)
    check_write_locations(cfg)
    first_step_seconds()  # SWEEP_FIRST_INVOKE_SECONDS, read by the runtimes' children
    return Components(**built, measure=blocks["measure"], settings=settings)

"""Instantiate a job's components from their config groups, checking every setting.

Each group option names its class with ``_target_``; the class's dataclass
fields are the schema. Types are checked here and ranges in each class's
``__post_init__``, so a bad value stops the job with one message naming the
setting before any data is loaded or any MLflow run is opened.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.measure import LatencySettings
from sweep.paths import check_inside_outputs, local_store_path, resolve_tracking_uri
from sweep.ranking import RankSettings
from sweep.records import SEQUENCE_KEYS
from sweep.validation import ConfigError, require

GROUPS: tuple[str, ...] = (*SEQUENCE_KEYS, "target")


@dataclass
class RunSettings:
    """The run-level knobs of conf/config.yaml (groups and blocks are checked apart)."""

    seed: int = 0
    objective: str | list = "tflite_accuracy"
    threads: int = 0
    allow_outside_outputs: bool = False

    def __post_init__(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        require(
            self.threads >= 0, "threads", self.threads, "an integer >= 0 (0 = TensorFlow's default)"
        )


@dataclass
class Components:
    """The instantiated options of one job, and the settings they came from."""

    dataset: Any
    model: Any
    train: Any
    pretrain: Any
    quantize: Any
    target: Any
    latency: LatencySettings
    settings: dict[str, dict[str, Any]]

    @property
    def sequence(self) -> dict[str, str]:
        return {group: str(getattr(self, group).name) for group in SEQUENCE_KEYS}

    @property
    def label(self) -> str:
        s = self.sequence
        return f"{s['dataset']} · {s['model']} · {s['train']} · {s['pretrain']} → {s['quantize']}"


def _accepts(annotation: Any, value: Any) -> bool:
    """Does ``value`` (from YAML or the command line) fit a field's type hint?"""
    if annotation is Any or (value is None and _optional(annotation)):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    check = origin or annotation
    return isinstance(value, check) if isinstance(check, type) else True


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    type(None): "null",
    dict: "a mapping",
    list: "a list",
}


def _describe(annotation: Any) -> str:
    """``int | None`` → "an integer or null": the words a user would use."""
    options = typing.get_args(annotation) or (annotation,)
    return " or ".join(_WORDS.get(typing.get_origin(o) or o, str(o)) for o in options)


def check_settings(group: str, cls: type, settings: dict[str, Any]) -> None:
    """Unknown keys and wrong types, named as the user would write them.

    ``group`` is the config path of the block ("train", "measure"; "" for top-level keys).
    """
    if not dataclasses.is_dataclass(cls):
        return  # a user's own class: its constructor is its schema
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    where = f"{group} '{settings.get('name', cls.__name__)}'" if group else "the run settings"
    for key, value in settings.items():
        setting = f"{group}.{key}" if group else key
        if key not in fields:
            raise ConfigError(
                f"{setting} is not a setting of {where} ({cls.__module__}.{cls.__name__});"
                f" valid settings: {', '.join(sorted(fields))}."
            )
        if not _accepts(hints[key], value):
            raise ConfigError(
                f"{setting}={value!r} is not valid: expected {_describe(hints[key])}."
            )


def _instantiate(group: str, node: DictConfig) -> tuple[Any, dict[str, Any]]:
    settings = OmegaConf.to_container(node, resolve=True)
    if not isinstance(settings, dict) or "_target_" not in settings:
        raise ConfigError(f"{group} has no _target_: pick an option, e.g. {group}=<name>.")
    target = settings.pop("_target_")
    try:
        cls = get_class(target)
    except Exception as error:
        raise ConfigError(f"{group}._target_={target!r} cannot be imported: {error}") from None
    check_settings(group, cls, settings)
    try:
        return instantiate(node, _convert_="all"), settings
    except Exception as error:
        cause = error.__cause__ or error
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{group}: {cause}") from None


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


def instantiate_components(cfg: DictConfig) -> Components:
    """Build every component of the job; raises ConfigError on the first bad setting."""
    built: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        if group not in cfg:
            raise ConfigError(
                f"the config has no '{group}' group: add `- {group}: <option>` to its defaults."
            )
        built[group], settings[group] = _instantiate(group, cfg[group])
    blocks = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in ("measure", "rank")}
    top = {key: cfg[key] for key in ("seed", "objective", "threads", "allow_outside_outputs")}
    blocks[""] = OmegaConf.to_container(OmegaConf.create(top))
    schemas = {"measure": LatencySettings, "rank": RankSettings, "": RunSettings}
    checked = {}
    for block, schema in schemas.items():
        check_settings(block, schema, blocks[block])
        checked[block] = schema(**blocks[block])  # ranges, in the schema's __post_init__
    check_write_locations(cfg)
    return Components(**built, latency=checked["measure"], settings=settings)

"""The search space: Hydra's sweep syntax (``hydra.sweeper.params`` and the command line)
as Optuna distributions, and a trial's parameters back as command-line overrides.

``choice(a,b)`` is categorical, ``range(a,b,step)`` an integer or stepped float range,
``interval(a,b)`` a float interval (``int(interval(a,b))`` integers, ``tag(log, ...)`` on
a log scale); a plain ``key=value`` is fixed for every trial. Group choices such as
``pretrain: choice(none,qat)`` are searched like any other value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweep.settings import ConfigError


@dataclass
class Space:
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]  # overrides every trial gets

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        return [f"{k}={v}" for k, v in params.items()] + [f"{k}={v}" for k, v in self.fixed.items()]

    def outside(self, params: Mapping[str, Any]) -> list[str]:
        """``knob=value`` for every parameter this space does not allow: a value out of its
        range or choices, a knob it does not search, a knob missing. A study journal is a
        file in the sweep folder, so a resumed study's queued parameters are checked
        (``model.filters=1000000000``, or a value that is an interpolation of a secret)."""
        found = [f"{k}={v!r} (not a knob of this search)" for k, v in params.items()
                 if k not in self.distributions]  # fmt: skip
        for name, distribution in self.distributions.items():
            if name not in params:
                found.append(f"{name} (missing)")
            elif not _inside(distribution, params[name]):
                found.append(f"{name}={params[name]!r} (expected {_describe(distribution)})")
        return found


def _inside(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(c) and value == c for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(distribution, IntDistribution):
        low, high, step = distribution.low, distribution.high, distribution.step
        return isinstance(value, int) and low <= value <= high and (value - low) % step == 0
    if isinstance(distribution, FloatDistribution):
        low, high, step = distribution.low, distribution.high, distribution.step
        if not low <= value <= high:
            return False
        return step is None or abs(round((value - low) / step) * step - (value - low)) < 1e-8
    return False


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return f"one of {list(distribution.choices)}"
    kind = "an integer" if isinstance(distribution, IntDistribution) else "a number"
    return f"{kind} in [{distribution.low}, {distribution.high}]"


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep():
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if value.shuffle:
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
            return CategoricalDistribution(choices)
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            # Hydra's range excludes its stop, like Python's.
            stop = value.stop - value.step
            return FloatDistribution(value.start, stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ConfigError(f"hydra.sweeper.params: {override.input_line} is not a supported sweep.")


def parse_space(params: DictConfig | Mapping | None, arguments: list[str]) -> Space:
    """The space from ``hydra.sweeper.params``, then the command line (which wins)."""
    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params)
    lines = [f"{k}={v}" for k, v in (params or {}).items()]
    lines += list(arguments)
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception as error:
        raise ConfigError(f"hydra.sweeper.params: {error}") from None
    for override in parsed:
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            try:
                distributions[key] = _distribution(override)
            except ValueError as error:
                line = override.input_line
                raise ConfigError(f"{line} is not a valid search range: {error}") from None
        else:
            fixed[key] = override.get_value_element_as_str()
    if not distributions:
        raise ConfigError(
            "hydra.sweeper.params is empty: give the knobs to search, "
            "e.g. 'hydra.sweeper.params.model.filters=int(interval(4,16))'."
        )
    return Space(distributions, fixed)


def reference_params(space: Space, config: DictConfig) -> dict[str, Any]:
    """The base config's value of every searched knob: the reference trial's parameters.

    A group (``pretrain``) takes the option the config chose; any other knob its value.
    """
    choices = config.hydra.runtime.choices
    params: dict[str, Any] = {}
    for name, distribution in space.distributions.items():
        value = choices[name] if name in choices else OmegaConf.select(config, name)
        if value is None:
            raise ConfigError(
                f"search.reference=true: the base config has no value for {name}, "
                "the reference trial cannot be built."
            )
        if isinstance(distribution, IntDistribution):
            value = int(value)
        elif isinstance(distribution, FloatDistribution):
            value = float(value)
        elif isinstance(distribution, CategoricalDistribution):
            # Hydra encodes choices from strings ("true" is a bool, "3" an int) already.
            same = [c for c in distribution.choices if str(c).lower() == str(value).lower()]
            value = value if value in distribution.choices or not same else same[0]
        params[name] = value
    return params

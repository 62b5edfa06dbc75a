"""The ``target`` config group: where the optimized model is meant to run.

A target is a list of measurement checks (:mod:`sweep.checks`) plus the figures they
measure against. Each option is one YAML file under ``conf/target/`` naming a class
here with ``_target_``:

- :class:`Host`: the desktop runtime the job measures anyway; no checks by default.
- :class:`Microcontroller`: a board (flash, RAM, CPU, clock, power). A board YAML
  composes its CPU's base (``defaults: [_cortex_m4f, _self_]``), which names the
  checks (``tflite_micro``: does it run on tflite-micro and fit the board;
  ``cortex_m``: its Cortex-M build emulated and counted), and states only what
  differs: its clock, memory sizes, memory system, power and their sources.

:meth:`Target.measure` runs the checks in order; a sweep's job and ``sweep-profile``
both call it, so they report the same figures for the same model and target.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from sweep.checks import CHECKS_TAG, EXCLUSION_TAG, Check, Measurement, ModelUnderTest, check_class
from sweep.checks.board_emulation import BoardModel
from sweep.metrics import HOST, MCU
from sweep.runtimes import cortex_m
from sweep.settings import ConfigError, above, at_least, one_of, plain_name, setting

log = logging.getLogger(__name__)

KB = 1024
"""Board sizes are in KB of 1024 bytes, as datasheets count memory."""

RUNTIMES = ("tflite_micro",)
"""Runtimes a board can deploy with (the check of that name measures it)."""


class Target:
    """Interface of the ``target`` group (see the module docstring).

    Subclasses are dataclasses with a ``name`` and a ``checks`` field (names of
    checks, in the order they run).
    """

    name: str
    checks: list[str]

    @property
    def is_microcontroller(self) -> bool:
        return False

    @property
    def scope(self) -> str:
        """Which rows of the metrics table answer the ranking's objectives (HOST or MCU)."""
        return MCU if self.is_microcontroller else HOST

    def check_objects(self) -> list[Check]:
        return [check_class(name)() for name in self.checks]

    def validate_checks(self) -> None:
        """Every check resolves, runs after the checks it needs, and suits this target."""
        if not isinstance(self.checks, list) or not all(isinstance(c, str) for c in self.checks):
            raise ConfigError(
                f"target.checks={self.checks!r} is not valid: expected a list of check names."
            )
        seen: list[str] = []
        for name in self.checks:
            check = check_class(name)
            if check.needs_board and not self.is_microcontroller:
                raise ConfigError(
                    f"target.checks: {name} measures against a board's figures, and "
                    f"target={self.name} is not a board: pick a board, e.g. target=cortex_m4."
                )
            missing = [r for r in check.requires if r not in seen]
            if missing:
                raise ConfigError(
                    f"target.checks: {name} needs {', '.join(missing)} to run before it: "
                    f"e.g. checks: [{', '.join([*missing, name])}]."
                )
            seen.append(check.name)

    def measure(self, model: ModelUnderTest) -> Measurement:
        """Run the checks in order. Tags: ``target.checks`` (which ran) and, for each check
        that excludes the model from the ranking, ``exclusion.<check>`` (why)."""
        found = Measurement()
        checks = self.check_objects()
        for check in checks:
            found.add(check.measure(model, self, found))
        found.tags[CHECKS_TAG] = ",".join(c.name for c in checks)
        for check in checks:
            reason = check.exclusion(found.metrics, found.tags)
            if reason:
                found.tags[f"{EXCLUSION_TAG}{check.name}"] = reason
        log.debug("target %s: %s %s", self.name, found.metrics, found.tags)
        return found

    def cache_material(self) -> dict[str, Any]:
        """What the checks' results depend on besides their code and this target's settings."""
        return {check.name: check.cache_material(self) for check in self.check_objects()}

    def summary(self, metrics: dict[str, float], tags: dict[str, str]) -> str:
        parts = [check.summary(metrics, tags) for check in self.check_objects()]
        return "; ".join(p for p in parts if p)


@dataclass
class Host(Target):
    """The desktop LiteRT runtime that the job measures anyway: no checks unless named."""

    name: str = "host"
    checks: list = setting(factory=list)

    def __post_init__(self) -> None:
        self.validate_checks()


@dataclass
class Microcontroller(Target):
    """A board: flash holds the model, RAM holds the tensor arena.

    ``flash_kb``/``ram_kb`` are the board's totals (KB = 1024 bytes); the fit check
    counts only the model and the arena against them (see
    :func:`sweep.runtimes.tflm.fits`). ``parity_tolerance_pp`` bounds the gap, in
    percentage points, between tflite-micro's and the desktop runtime's accuracy.
    ``cpu``, ``clock_mhz``, ``memory`` and ``active_power_mw`` (with its source) turn
    the emulated instruction mix into board estimates through the core's cycle model
    (:func:`sweep.runtimes.cortex_m.estimate`): ``memory`` names a board whose memory
    system is described in :data:`~sweep.runtimes.cortex_m.REFERENCE_BOARDS`
    (``nucleo_l4r5zi``) or describes the board's own
    (:class:`~sweep.runtimes.cortex_m.MemorySystem`'s fields: where code and weights
    live, flash wait states, fetch width, accelerator). ``cpi`` pins cycles per
    instruction instead (no cycle model, no band). ``emulate`` runs the Cortex-M build
    on ``emulate_images`` test images. ``micro_accuracy=false`` runs tflite-micro on those
    images only, without its accuracy over the test set (``mcu_accuracy`` and the parity
    figures): a board search's rung 0 needs only whether the model runs, its arena and
    the board's figures, and tflite-micro's reference kernels take ~1 ms an image.
    """

    name: str = setting(dataclasses.MISSING, plain_name())
    flash_kb: int = setting(dataclasses.MISSING, at_least(1))
    ram_kb: int = setting(dataclasses.MISSING, at_least(1))
    cpu: str = setting(dataclasses.MISSING, one_of(*cortex_m.CPUS))
    clock_mhz: float = setting(dataclasses.MISSING, above(0))
    runtime: str = setting("tflite_micro", one_of(*RUNTIMES))
    checks: list = setting(factory=lambda: ["tflite_micro", "cortex_m"])
    memory: Any = None  # a REFERENCE_BOARDS key or MemorySystem fields; None: not described
    cpi: float | None = setting(None, above(0))  # None: the cycle model; a figure pins it
    active_power_mw: float | None = setting(None, above(0))
    power_source: str = ""
    emulate: bool = True
    emulate_images: int = setting(10, at_least(1))
    micro_accuracy: bool = True  # False: no tflite-micro accuracy (a search's rung 0)
    parity_tolerance_pp: float = setting(0.5, at_least(0))
    latency_repeats: int = setting(50, at_least(1))

    def __post_init__(self) -> None:
        self.validate_checks()
        memory = self.memory_system  # refuses a bad memory description before any work
        if memory is not None:
            try:
                memory.wait_states_at(self.clock_mhz)
            except ValueError as error:
                raise ConfigError(
                    f"target.clock_mhz={self.clock_mhz:g}: {error}: choose a clock the board's "
                    "flash runs at, or describe its memory (target.memory)"
                ) from None

    @property
    def is_microcontroller(self) -> bool:
        return True

    @property
    def memory_system(self) -> cortex_m.MemorySystem | None:
        """The board's memory system from ``memory`` (None when the YAML describes none)."""
        return memory_system(self.memory, self.name)

    @property
    def flash_bytes(self) -> int:
        return self.flash_kb * KB

    @property
    def ram_bytes(self) -> int:
        return self.ram_kb * KB

    @property
    def board(self) -> BoardModel:
        return BoardModel(
            self.cpu, self.clock_mhz, self.cpi, self.active_power_mw, self.memory_system
        )


_MEMORY_FIELDS = tuple(
    f.name for f in dataclasses.fields(cortex_m.MemorySystem) if f.name != "name"
)


def memory_system(memory: Any, board: str) -> cortex_m.MemorySystem | None:
    """``target.memory`` as a memory system: a described board's by name, or the fields
    given; every refusal names the setting and what would be valid."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if memory is None:
        return None
    if isinstance(memory, str):
        if memory not in cortex_m.REFERENCE_BOARDS:
            raise ConfigError(
                f"target.memory={memory!r} is not a described memory system: name one of "
                f"{sorted(cortex_m.REFERENCE_BOARDS)} or give its fields {list(_MEMORY_FIELDS)}"
            )
        return cortex_m.REFERENCE_BOARDS[memory]
    if isinstance(memory, DictConfig | ListConfig):
        memory = OmegaConf.to_container(memory, resolve=True)
    if not isinstance(memory, dict):
        raise ConfigError(
            f"target.memory must be a described board's name or a mapping of "
            f"{list(_MEMORY_FIELDS)}, got {type(memory).__name__}"
        )
    unknown = sorted(set(memory) - set(_MEMORY_FIELDS))
    if unknown:
        raise ConfigError(
            f"target.memory has unknown keys {unknown}: valid keys are {list(_MEMORY_FIELDS)}"
        )
    fields = dict(memory)
    try:
        fields["wait_state_table"] = tuple(
            (float(mhz), float(ws)) for mhz, ws in fields.get("wait_state_table") or ()
        )
        return cortex_m.MemorySystem(name=board, **fields)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"target.memory: {error}") from None

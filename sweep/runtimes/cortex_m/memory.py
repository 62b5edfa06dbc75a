"""What a board's memory adds to the core's cycles: flash wait states behind an accelerator.

The core tables (:mod:`.timing`) assume zero wait states. On a board, code and the
model's weights usually sit in flash, which at full clock needs wait states
(datasheet: so many cycles per access at this clock), hidden in part by a prefetch
buffer, ART accelerator, cache or XIP cache. A :class:`MemorySystem` states those
datasheet facts; the stall they cause is

    stall cycles = exposure x wait_states x flash accesses

where the flash accesses are counted from the instruction mix: instruction fetches
(the code bytes executed, 2 per 16-bit and 4 per 32-bit instruction, over the
flash's fetch width) when code is in flash, plus data words loaded when the
weights are in flash (activations and the stack are always in SRAM; which loads
read weights the emulator does not know, so every loaded word counts). The
``exposure``, the fraction of those accesses that the accelerator does not hide,
is the one constant fitted per memory system (:mod:`.fit`), on published
latencies, never per model. A memory system with zero wait states (code and data
in SRAM or TCM) stalls nothing, whatever the exposure.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.runtimes.cortex_m.mix import InstructionMix

PLACES = ("flash", "sram", "tcm", "xip")
"""Where code or weights can live: internal flash, SRAM, tightly coupled memory,
external flash executed in place (QSPI/OSPI through an XIP cache)."""

ACCELERATORS = ("none", "prefetch", "art", "cache", "xip_cache")
"""What hides flash wait states: nothing, a prefetch buffer, ST's ART accelerator
(prefetch + small instruction/data caches), a flash cache or L1 cache, an XIP cache."""


@dataclass(frozen=True)
class MemorySystem:
    """The memory facts of one board, as its datasheet states them at its clock.

    ``code``/``weights``: where the firmware's code and the model's constant data
    live (:data:`PLACES`). ``wait_states``: extra cycles per flash (or XIP) access at
    the board's clock; ``wait_state_table``, if given, the datasheet's whole table as
    ``(up to MHz, wait states)`` pairs in rising order, so that a board run at another
    clock (``target.clock_mhz=...``) gets that clock's wait states
    (:meth:`wait_states_at`). ``fetch_bytes``: bytes one flash access delivers (a 64-bit
    flash line: 8; 128-bit: 16). ``accelerator``: :data:`ACCELERATORS`.
    ``name``: the memory system's identity: a fitted board's key (``nucleo_l4r5zi``)
    when the target *is* that board's memory, or the target's own name.
    ``calibration``: the fitted memory system whose exposure applies
    (:data:`.fit.FIT_ROWS`): the board's own (calibrated) or another one's (borrowed,
    stated as such); ``None``: borrowed from the fitted systems with the same
    accelerator, if any.
    ``source``: the datasheet sections the facts come from.
    """

    name: str
    code: str
    weights: str
    wait_states: float
    fetch_bytes: int
    accelerator: str
    calibration: str | None = None
    source: str = ""
    wait_state_table: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for field_name in ("code", "weights"):
            if getattr(self, field_name) not in PLACES:
                raise ValueError(
                    f"memory {self.name}: {field_name} must be one of {PLACES}, "
                    f"got {getattr(self, field_name)!r}"
                )
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"memory {self.name}: accelerator must be one of {ACCELERATORS}, "
                f"got {self.accelerator!r}"
            )
        if self.wait_states < 0 or self.fetch_bytes <= 0:
            raise ValueError(f"memory {self.name}: wait_states >= 0 and fetch_bytes > 0")
        limits = [mhz for mhz, _ in self.wait_state_table]
        if limits != sorted(limits):
            raise ValueError(f"memory {self.name}: wait_state_table must rise in MHz")

    def wait_states_at(self, clock_mhz: float | None = None) -> float:
        """Flash wait states at ``clock_mhz`` (the stated ``wait_states`` without a table)."""
        if clock_mhz is None or not self.wait_state_table:
            return self.wait_states
        for up_to_mhz, wait_states in self.wait_state_table:
            if clock_mhz <= up_to_mhz:
                return wait_states
        raise ValueError(
            f"memory {self.name}: {clock_mhz:g} MHz is above its flash's fastest clock "
            f"({self.wait_state_table[-1][0]:g} MHz)"
        )

    @property
    def in_flash(self) -> bool:
        """Code or weights are read from flash (or XIP flash)."""
        return self.code in ("flash", "xip") or self.weights in ("flash", "xip")

    def flash_accesses(self, mix: InstructionMix) -> float:
        """Flash (or XIP) accesses of a run: line fetches of code in flash, words of
        data loaded when the weights are in flash."""
        accesses = 0.0
        if self.code in ("flash", "xip"):
            code_bytes = 2 * (mix.instructions + mix["wide"])
            accesses += code_bytes / self.fetch_bytes
        if self.weights in ("flash", "xip"):
            accesses += (
                mix["load"]
                + 2 * mix["load_double"]
                + mix["ldm_registers"]
                + mix["fpu_load"]
                + mix["fpu_words"]
            )
        return accesses

    def stall_cycles(
        self, mix: InstructionMix, exposure: float, clock_mhz: float | None = None
    ) -> float:
        """Cycles the memory adds, for a given exposure (fraction of accesses not hidden)."""
        return exposure * self.wait_states_at(clock_mhz) * self.flash_accesses(mix)

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
is the one constant fitted per memory system (:mod:`.calibration`), on published
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
    the board's clock. ``fetch_bytes``: bytes one flash access delivers (a 64-bit
    flash line: 8; 128-bit: 16). ``accelerator``: :data:`ACCELERATORS`.
    ``calibration``: the name of the fitted memory system whose exposure applies
    (:data:`.calibration.CALIBRATED`), ``None`` for a board nobody measured.
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

    @property
    def zero_wait(self) -> bool:
        return self.wait_states == 0 or (
            self.code in ("sram", "tcm") and self.weights in ("sram", "tcm")
        )

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

    def stall_cycles(self, mix: InstructionMix, exposure: float) -> float:
        """Cycles the memory adds, for a given exposure (fraction of accesses not hidden)."""
        if self.zero_wait:
            return 0.0
        return exposure * self.wait_states * self.flash_accesses(mix)

"""The memory systems of the boards with published figures, as their datasheets state them.

These are the boards the cycle model is fitted on (NUCLEO-L4R5ZI, EK-RA6M4,
nRF5340-DK) or checked against (NUCLEO-H7A3ZI-Q, DISCO-F746NG, Raspberry Pi Pico),
at the clock of their published results. A target YAML describes its own board
the same way (:class:`~sweep.runtimes.cortex_m.memory.MemorySystem`'s fields);
``calibration`` names the fitted memory system whose exposure it shares.

Where code and weights live is what the published builds do: every one links the
model's weights as a ``const`` array, so they stay in flash, and runs its code
from flash (XIP flash on the Pico).
"""

from __future__ import annotations

from sweep.runtimes.cortex_m.memory import MemorySystem

REFERENCE_BOARDS: dict[str, MemorySystem] = {
    board.name: board
    for board in (
        MemorySystem(
            name="nucleo_l4r5zi",
            code="flash",
            weights="flash",
            wait_states=5,
            fetch_bytes=8,
            accelerator="art",
            calibration="nucleo_l4r5zi",
            source="STM32L4R5ZI @ 120 MHz: RM0432 (STM32L4+ reference manual) §3.3.3 "
            "'Read access latency': 5 wait states for HCLK 100-120 MHz in range 1 boost mode "
            "(one more per 20 MHz); 64-bit flash read width; ART accelerator (prefetch, "
            "instruction and data caches)",
            wait_state_table=((20, 0), (40, 1), (60, 2), (80, 3), (100, 4), (120, 5)),
        ),
        MemorySystem(
            name="ek_ra6m4",
            code="flash",
            weights="flash",
            wait_states=3,
            fetch_bytes=16,
            accelerator="cache",
            calibration="ek_ra6m4",
            source="R7FA6M4AF3CFB @ 200 MHz: Renesas FSP bsp_feature.h for the RA6M4 (shipped "
            "in the MLPerf Tiny v0.7 submission): 3 code-flash wait cycles above 150 MHz "
            "(FLWT), flash cache present, no prefetch buffer; SRAM needs a wait state above "
            "100 MHz (SRAMWTSC), which this model does not count separately (the fitted "
            "exposure absorbs it). 128-bit code-flash read width: not confirmed here",
            wait_state_table=((50, 0), (100, 1), (150, 2), (200, 3)),
        ),
        MemorySystem(
            name="nrf5340_dk",
            code="flash",
            weights="flash",
            wait_states=3,
            fetch_bytes=16,
            accelerator="cache",
            calibration="nrf5340_dk",
            source="nRF5340 application core @ 128 MHz: code runs from flash through the "
            "application core's instruction/data cache (nRF5340 Product Specification, "
            "application core memory). Wait states and read width are not confirmed here: "
            "3 and 16 bytes are assumptions; the fitted exposure absorbs them",
        ),
        MemorySystem(
            name="nucleo_h7a3zi",
            code="flash",
            weights="flash",
            wait_states=6,
            fetch_bytes=16,
            accelerator="cache",
            calibration=None,
            source="STM32H7A3ZI @ 280 MHz: RM0455 flash latency table, VOS0: 6 wait states at "
            "280 MHz (not confirmed here); 128-bit flash word; Cortex-M7 L1 caches, 16 KB "
            "instruction + 16 KB data",
        ),
        MemorySystem(
            name="disco_f746ng",
            code="flash",
            weights="flash",
            wait_states=7,
            fetch_bytes=32,
            accelerator="cache",
            calibration=None,
            source="STM32F746NG @ 216 MHz: RM0385 §3.3.2 'Read access latency': 7 wait states at "
            "216 MHz (2.7-3.6 V); 256-bit flash line on AXI; Cortex-M7 L1 caches, 4 KB "
            "instruction + 4 KB data (ART accelerator on the ITCM path)",
            wait_state_table=(
                (30, 0),
                (60, 1),
                (90, 2),
                (120, 3),
                (150, 4),
                (180, 5),
                (210, 6),
                (216, 7),
            ),
        ),
        MemorySystem(
            name="rpi_pico",
            code="xip",
            weights="xip",
            wait_states=48,
            fetch_bytes=8,
            accelerator="xip_cache",
            calibration=None,
            source="RP2040 @ 125 MHz: RP2040 datasheet §2.6.3 'Flash' (XIP): 16 KB two-way XIP "
            "cache with 8-byte lines in front of a QSPI flash clocked at sys_clk/2; a miss "
            "is a fast-read-quad transfer, about 24 QSPI clocks = 48 system clocks (an "
            "estimate from the transfer's length, not a datasheet figure); SRAM is zero-wait",
        ),
    )
}
"""Board key (as in :attr:`.published.PublishedRow.board`) -> its memory system."""

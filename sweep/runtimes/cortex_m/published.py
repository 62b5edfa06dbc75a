"""Published MLPerf Tiny closed-division results on Arm Cortex-M boards, row for row.

Every latency is ``1000 / median throughput`` of the submission's
``results/<system>/<benchmark>/performance/results.txt``; every energy the
"Median energy cost" of ``.../energy/results.txt``; board, clock and software
from ``systems/*.json`` of the same repository (``github.com/mlcommons/
tiny_results_v<round>``). The models are byte-identical to the two reference int8
models in ``../shared/mlperf_tiny/`` (kws: DS-CNN, ic: ResNet-8).

``kind`` says what a row can be used for:

- ``"tflm_cmsis_nn"``: TFLM with CMSIS-NN, the stack emulated here;
- ``"cmsis_nn"``: CMSIS-NN kernels under another framework (microTVM);
- ``"own_kernels"``: a vendor engine with its own kernels (X-CUBE-AI, Plumerai,
  ONNC): never fitted on; used only to compare *cores* running the same engine.

Pure data: :mod:`.calibration` fits and checks with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRow:
    """One published MLPerf Tiny result (median latency and energy per inference).

    ``board``: the key of the board's memory system in
    :data:`~sweep.runtimes.cortex_m.reference_boards.REFERENCE_BOARDS`; ``cpu``: the
    CPU name of :data:`~sweep.runtimes.cortex_m.cpus.CPUS` that runs it.
    ``source``: the results folder the figures come from.
    """

    key: str
    round: str
    system: str
    core: str
    cpu: str
    board: str
    clock_mhz: float
    software: str
    kind: str
    latency_ms: Mapping[str, float]
    energy_uj: Mapping[str, float] | None = None
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.round} {self.system} ({self.software})"


def _ms(throughput: float) -> float:
    """Latency from a median throughput in inferences per second."""
    return round(1000.0 / throughput, 2)


MODEL_FILES: dict[str, str] = {"kws": "kws_ref_model.tflite", "ic": "ic_resnet8_int8.tflite"}
"""The MLPerf Tiny reference models the fit uses, as files in ``shared/mlperf_tiny/``."""


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow(
        "v0.5-reference", "v0.5", "reference / Nucleo-L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "TFLM 2.3.1 + CMSIS-NN, mbed-os, -Os", "tflm_cmsis_nn",
        {"ic": 704.2, "kws": 181.9}, {"ic": 29_207, "kws": 7_374},
        "tiny_results_v0.5/closed/reference (shared/mlperf_tiny/README.md)",
    ),
    PublishedRow(
        "v1.0-octoml", "v1.0", "OctoML / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "microTVM + CMSIS-NN, Zephyr", "cmsis_nn",
        {"ic": 389.6, "kws": 99.8}, {"ic": 20_236.3, "kws": 5_230.3},
        "tiny_results_v1.0/closed/OctoML/results/microtvm_cmsis_nn/NUCLEO_L4R5ZI",
    ),
    PublishedRow(
        "v1.0-octoml-nrf5340", "v1.0", "OctoML / NRF5340-DK", "Cortex-M33", "cortex-m33",
        "nrf5340_dk", 128, "microTVM + CMSIS-NN, Zephyr", "cmsis_nn",
        {"ic": _ms(3.163), "kws": _ms(13.143)}, None,
        "tiny_results_v1.0/closed/OctoML/results/microtvm_cmsis_nn/NRF5340-DK",
    ),
    PublishedRow(
        "v0.7-renesas", "v0.7", "renesas / EK-RA6M4", "Cortex-M33", "cortex-m33", "ek_ra6m4",
        200, "TFLM + CMSIS-NN, GCC 8.3", "tflm_cmsis_nn",
        {"ic": 246.2, "kws": 50.6}, {"ic": 17_723.8, "kws": 3_797.0},
        "tiny_results_v0.7/closed/renesas/results/EK-RA6M4 (energy at 3.0 V)",
    ),
    PublishedRow(
        "v1.1-krai-microtvm", "v1.1", "Krai / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "microTVM + CMSIS-NN, Zephyr", "cmsis_nn",
        {"ic": _ms(2.567), "kws": _ms(10.019)}, None,
        "tiny_results_v1.1/closed/Krai/results (microtvm_cmsis_nn)",
    ),
    PublishedRow(
        "v1.1-krai-microtvm-nrf5340", "v1.1", "Krai / NRF5340-DK", "Cortex-M33", "cortex-m33",
        "nrf5340_dk", 128, "microTVM + CMSIS-NN, Zephyr", "cmsis_nn",
        {"ic": _ms(3.146), "kws": _ms(13.074)}, None,
        "tiny_results_v1.1/closed/Krai/results (microtvm_cmsis_nn)",
    ),
    PublishedRow(
        "v1.1-krai-xcubeai73-l4r5", "v1.1", "Krai / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "X-CUBE-AI 7.3", "own_kernels",
        {"ic": _ms(4.407), "kws": _ms(13.381)}, {"ic": 17_755.4, "kws": 5_627.5},
        "tiny_results_v1.1/closed/Krai/results (X-CUBE-AI-7.3.0)",
    ),
    PublishedRow(
        "v1.1-krai-xcubeai73-h7a3", "v1.1", "Krai / NUCLEO_H7A3ZI", "Cortex-M7", "cortex-m7",
        "nucleo_h7a3zi", 280, "X-CUBE-AI 7.3", "own_kernels",
        {"ic": _ms(18.574), "kws": _ms(59.667)}, {"ic": 8_471.1, "kws": 2_367.5},
        "tiny_results_v1.1/closed/Krai/results (X-CUBE-AI-7.3.0)",
    ),
    PublishedRow(
        "v1.1-krai-xcubeai80-l4r5", "v1.1", "Krai / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "X-CUBE-AI 8.0", "own_kernels",
        {"ic": _ms(4.505), "kws": _ms(13.759)}, {"ic": 17_315.1, "kws": 5_481.6},
        "tiny_results_v1.1/closed/Krai/results (X-CUBE-AI-8.0.0)",
    ),
    PublishedRow(
        "v1.1-krai-xcubeai80-h7a3", "v1.1", "Krai / NUCLEO_H7A3ZI", "Cortex-M7", "cortex-m7",
        "nucleo_h7a3zi", 280, "X-CUBE-AI 8.0", "own_kernels",
        {"ic": _ms(18.215), "kws": _ms(60.988)}, {"ic": 7_615.4, "kws": 2_362.1},
        "tiny_results_v1.1/closed/Krai/results (X-CUBE-AI-8.0.0)",
    ),
    PublishedRow(
        "v1.1-skymizer", "v1.1", "Skymizer / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "ONNC + CMSIS_5", "own_kernels", {"ic": 298.7, "kws": 82.0},
        None, "shared/mlperf_tiny/README.md",
    ),
    PublishedRow(
        "v0.7-st", "v0.7", "STMicroelectronics / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "X-CUBE-AI 7.1", "own_kernels", {"ic": 252.8, "kws": 97.6},
        None, "shared/mlperf_tiny/README.md",
    ),
    PublishedRow(
        "v1.2-st", "v1.2", "STMicroelectronics / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        "nucleo_l4r5zi", 120, "X-CUBE-AI 9.0", "own_kernels", {"ic": 165.1, "kws": 43.2},
        None, "shared/mlperf_tiny/README.md",
    ),
    PublishedRow(
        "v1.2-st-h7", "v1.2", "STMicroelectronics / NUCLEO_H7A3ZI_Q", "Cortex-M7", "cortex-m7",
        "nucleo_h7a3zi", 280, "X-CUBE-AI 9.0", "own_kernels", {"ic": 40.8, "kws": 11.3},
        None, "shared/mlperf_tiny/README.md",
    ),
    PublishedRow(
        "v1.0-plumerai", "v1.0", "plumerai / DISCO_F746NG", "Cortex-M7", "cortex-m7",
        "disco_f746ng", 216, "Plumerai engine", "own_kernels", {"ic": 64.8, "kws": 19.1},
        None, "shared/mlperf_tiny/README.md",
    ),
)  # fmt: skip
"""Every row used here: the table of ``../shared/mlperf_tiny/README.md`` plus the
nRF5340-DK rows (OctoML v1.0, Krai v1.1) and Krai's v1.1 X-CUBE-AI rows on both the
NUCLEO-L4R5ZI and the NUCLEO-H7A3ZI (one engine on a Cortex-M4F and a Cortex-M7)."""

ROWS: dict[str, PublishedRow] = {row.key: row for row in PUBLISHED}

SAME_ENGINE_PAIRS: tuple[tuple[str, str], ...] = (
    ("v1.1-krai-xcubeai73-l4r5", "v1.1-krai-xcubeai73-h7a3"),
    ("v1.1-krai-xcubeai80-l4r5", "v1.1-krai-xcubeai80-h7a3"),
    ("v1.2-st", "v1.2-st-h7"),
    ("v1.0-octoml", "v1.0-octoml-nrf5340"),
    ("v1.1-krai-microtvm", "v1.1-krai-microtvm-nrf5340"),
)
"""(Cortex-M4F row, other-core row) pairs running the same engine and models: what
real boards show about a core against the M4F, independent of the engine's speed."""


@dataclass(frozen=True)
class PublishedLatency:
    """A published latency of one model outside MLPerf Tiny's rows, for checks only."""

    key: str
    model: str  # a file under tflite-micro's models folder
    cpu: str
    board: str
    clock_mhz: float
    latency_ms: float
    software: str
    source: str


OTHER_PUBLISHED: tuple[PublishedLatency, ...] = (
    PublishedLatency(
        "pico-tflmicro-person", "person_detect.tflite", "cortex-m0plus", "rpi_pico", 125,
        823.0, "pico-tflmicro (TFLM + CMSIS-NN, ARMv6-M C paths, one core)",
        "github.com/raspberrypi/pico-tflmicro benchmark_results.txt: person_detection_benchmark "
        "'NoPersonDataIterations(1) took 823658 ticks (823 ms)' without the multicore change; "
        "another version of the file sums the ops of the same benchmark to 'Total 782 ms'",
    ),
)  # fmt: skip
"""Same-stack latencies on a core without MLPerf Tiny rows (never fitted on)."""

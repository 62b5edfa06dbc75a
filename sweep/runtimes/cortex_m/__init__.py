"""Run a deploy bundle on an emulated Cortex-M CPU with TFLM + CMSIS-NN, counting instructions.

Why: tflite-micro on the host says whether a model runs and in how much RAM,
but not how fast it is on the board, and host timings of reference kernels say
nothing about CMSIS-NN on a Cortex-M4. Here every model is built the way it
would be flashed (the GNU Arm toolchain, TFLM with Arm's CMSIS-NN kernels, the
run's own bundle: ``model_data.cc``, ``micro_op_resolver.h``,
``kTensorArenaSize``) and executed on an instruction-set emulator of the
target's CPU. The result is an exact, deterministic instruction count per
inference (the same on every run and machine, unlike a wall-clock time), the
firmware's real flash and RAM footprint, and the outputs, which must equal
tflite-micro's on the host.

Emulator: the Unicorn engine (PyPI ``unicorn``; QEMU's CPU core as a library).
Chosen over QEMU system emulation because it is a pip dependency rather than a
system package, has Cortex-M0, M4, M7 and M33 CPU models (QEMU's MPS2 boards have no
M0+ and need a board-specific startup per machine), lets the host read and
write the firmware's memory directly (images in, outputs out, no semihosting
channel to parse), and counts instructions exactly through one callback per
translated block (see :mod:`.emulator`), which emulates a 12.5M-MAC ResNet-8
invoke in seconds. It counts instructions, not cycles; the same hook also records
the instruction mix (classes, taken branches: :mod:`.mix`), which the cycle model
turns into board cycles: a timing table per core from Arm's Technical Reference
Manuals (:mod:`.timing`) plus the board's memory system (:mod:`.memory`) with one
constant per memory system fitted on published MLPerf Tiny rows (:mod:`.fit`);
:func:`estimate` gives the figure, its band and what is calibrated. ESP32
(``xtensa-lx6``) is not an Arm CPU and is reported as not emulated.

Public API: :data:`CPUS`, :func:`is_emulated`, :func:`emulate` (a bundle
folder) and :func:`emulate_model` (a model's bytes) -> :class:`EmulationResult`
(with ``.mix``), :func:`emulate_per_model` (the per-model build, the reference),
:func:`estimate` -> :class:`Estimate`, :class:`MemorySystem`,
:data:`REFERENCE_BOARDS`, :func:`build_library`, and the errors
:class:`ToolchainMissing` / :class:`ThirdPartyMissing`, whose messages say what
to install or set. The TFLM library is built per CPU, each object once (its common
part: a minute or two; each operator's kernel the first time a model uses it:
seconds), with a runner image per operator set that takes any model at run time,
all cached under ``<outputs>/cache/firmware/``; each model then costs the
emulation of its counted invoke plus a fraction of a second, and a new operator
set or arena class a compile or two (seconds, cached). Every cache entry is checked before
use (:mod:`.cache_entry`).
"""

from sweep.runtimes.cortex_m.cpus import CPUS, CpuSpec, cpu_spec, is_emulated
from sweep.runtimes.cortex_m.emulator import EmulationError, InstructionBudgetExceeded
from sweep.runtimes.cortex_m.estimate import Estimate, estimate
from sweep.runtimes.cortex_m.firmware import BundleError
from sweep.runtimes.cortex_m.library import Library, build_library, cache_dir, cache_key
from sweep.runtimes.cortex_m.memory import MemorySystem
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.per_model import emulate_per_model
from sweep.runtimes.cortex_m.protocol import FirmwareError
from sweep.runtimes.cortex_m.reference_boards import REFERENCE_BOARDS
from sweep.runtimes.cortex_m.run import EmulationResult, emulate, emulate_model
from sweep.runtimes.cortex_m.toolchain import (
    DEBIAN_PACKAGES,
    ThirdPartyMissing,
    ToolchainMissing,
)

__all__ = [
    "CPUS",
    "DEBIAN_PACKAGES",
    "REFERENCE_BOARDS",
    "BundleError",
    "CpuSpec",
    "EmulationError",
    "EmulationResult",
    "Estimate",
    "FirmwareError",
    "InstructionBudgetExceeded",
    "InstructionMix",
    "Library",
    "MemorySystem",
    "ThirdPartyMissing",
    "ToolchainMissing",
    "build_library",
    "cache_dir",
    "cache_key",
    "cpu_spec",
    "emulate",
    "emulate_model",
    "emulate_per_model",
    "estimate",
    "is_emulated",
]

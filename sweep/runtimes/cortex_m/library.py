"""Build TFLM + CMSIS-NN per CPU, only what a firmware links, each object once, and keep it.

The library never changes for a given source tree, CPU and compiler, while every model
of a sweep needs it; so its objects are compiled once into cache entries under
``<outputs>/cache/firmware/`` (or ``$SWEEP_FIRMWARE_CACHE``, see :func:`cache_root`)
named ``<cpu>-<key>-<unit>``, ``key`` hashing everything that changes the result (the
sources' bytes, the make variables, the compiler's version and this recipe). The units
(:mod:`.library_plan`): ``base``, everything a firmware links whatever its operators
(the interpreter, the helpers kernels share, CMSIS-NN's C functions: 142 objects with
CMSIS-NN), and ``op-<kernel>``, one per operator kernel object (78), compiled the first
time a model with that operator meets this CPU. A model's library is the base plus its
operators' kernels, archived in TFLM's own member order, so a link pulls exactly the
members, in the order, it pulls from the whole library (instruction counts, flash and
RAM identical: ``benchmarks/board_cost.py`` compares both on every model).
Every entry holds only objects, is checked before every use and is rebuilt when bad
(:mod:`.cache_entry`); units missing together are compiled by one ``make``, under the
CPU's lock.

What is built: TFLM's own Makefile, its object lists, compile rules and flags, with one
extra target (:data:`_SWEEP_MK`) that builds the objects asked for. Left out for good
(:func:`excluded`): the signal-processing kernels (custom operators, never registered by
a bundle's resolver or the runner), the kernels of other custom operators, TFLM's test
and memory-recording helpers (:data:`EXCLUDED`), and, with CMSIS-NN, every member the
link of a runner registering every builtin operator never pulls on any CPU
(:data:`NEVER_LINKED`): 220 of TFLM's 315 objects make the whole library. Nearly all of a
C++ object's compile time goes into ``schema_generated.h`` (1 MB): its parse (~4 CPU s),
precompiled once per optimization level and build (:data:`PCH_HEADERS`, ``-include``, the
object's very flags otherwise), and the instantiation of the templates its inline
functions use (~1.3 CPU s), which a precompiled header cannot save; so the sources that
never include it (:data:`NO_PCH`) are compiled without one. Same sources, same flags: every
object is byte for byte what TFLM's own build makes (``benchmarks/board_cost.py`` checks
each member against a full build's archive). The base costs ~100 CPU s per CPU, each new
batch of operator kernels a few seconds each plus ~10 s (a copy of the sources, a parse,
the precompiled header); the whole library was ~250 CPU s.

Flags for compiling firmware against the library (:func:`compile_flags`) are
derived from the same Makefile in the third-party sources on demand, never read
from a cache entry; include folders point into the (read-only) third-party
sources themselves.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.cortex_m.cache_entry import BadEntry, fetch, locked, verify
from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.library_plan import Plan, normalize, plan
from sweep.runtimes.cortex_m.ops import builtins
from sweep.runtimes.cortex_m.toolchain import (
    check_newlib,
    third_party_root,
    tool,
    toolchain_bin,
    toolchain_version,
)
from sweep.stores.paths import check_inside_outputs, outputs_root

log = logging.getLogger(__name__)

RECIPE_VERSION = "4-units-per-operator"
"""Bump when the way the library is built changes, so old caches are not reused."""

MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
ARCHIVE = "libtensorflow-microlite.a"
ALLOW_OUTSIDE_ENV = "SWEEP_ALLOW_OUTSIDE_OUTPUTS"
"""Set to 1 to let ``SWEEP_FIRMWARE_CACHE`` name a folder outside the outputs folder."""

EXCLUDED = (
    # Signal-processing kernels: custom operators ("SignalFramer", ...) only.
    "signal/%",
    # Kernels of custom operators and of TFLM's compression, which no bundle registers.
    "tensorflow/lite/micro/kernels/circular_buffer%",
    "tensorflow/lite/micro/kernels/detection_postprocess.o",
    "tensorflow/lite/micro/kernels/ethosu.o",
    "tensorflow/lite/micro/kernels/decode%",
    "tensorflow/lite/micro/kernels/decompress%",
    # Test and recording helpers.
    "tensorflow/lite/micro/kernels/kernel_runner.o",
    "tensorflow/lite/micro/fake_micro_context.o",
    "tensorflow/lite/micro/mock_micro_graph.o",
    "tensorflow/lite/micro/test_helper%",
    "tensorflow/lite/micro/recording_micro_allocator.o",
    "tensorflow/lite/micro/arena_allocator/recording_single_arena_buffer_allocator.o",
)
"""Make patterns, relative to an object folder, of what is left out of the archive."""

NEVER_LINKED = (
    # TFLM objects (all C++) that a runner registering every builtin operator, and so
    # links a superset of any model's firmware, never pulls from the archive on any CPU
    # (its link map, "Archive member included", cortex-m0plus/m33/m4f/m7): profiling, timing
    # and debugging helpers, the tensor utilities of the float and hybrid LSTM kernels
    # (CMSIS-NN's LSTM has its own), and the reference ADD's helpers (CMSIS-NN's add.cc
    # has its own).
    "tensorflow/lite/core/api/tensor_utils.o",
    "tensorflow/lite/kernels/internal/reference/portable_tensor_utils.o",
    "tensorflow/lite/kernels/internal/runtime_shape.o",
    "tensorflow/lite/kernels/internal/tensor_utils.o",
    "tensorflow/lite/micro/cortex_m_generic/micro_time.o",
    "tensorflow/lite/micro/hexdump.o",
    "tensorflow/lite/micro/memory_planner/non_persistent_buffer_planner_shim.o",
    "tensorflow/lite/micro/micro_profiler.o",
    "tensorflow/lite/micro/system_setup.o",
    "tensorflow/lite/micro/kernels/add_common.o",
    "tensorflow/lite/micro/kernels/micro_tensor_utils.o",
    # CMSIS-NN functions (C, cheap to compile, but no reason to) of data types and shapes
    # TFLM's CMSIS-NN kernels never call: int4 and int16 paths, u8 and q7/q15 activations,
    # concatenation and reshape (TFLM has its own), the matrix cores of the MVE/DSP paths
    # not taken.
    "%/arm_concatenation_s8_w.o",
    "%/arm_concatenation_s8_x.o",
    "%/arm_concatenation_s8_y.o",
    "%/arm_concatenation_s8_z.o",
    "%/arm_convolve_even_s4.o",
    "%/arm_depthwise_conv_fast_s16.o",
    "%/arm_depthwise_conv_get_buffer_sizes_s16.o",
    "%/arm_depthwise_conv_wrapper_s16.o",
    "%/arm_nn_depthwise_conv_nt_t_padded_s8.o",
    "%/arm_nn_depthwise_conv_nt_t_s16.o",
    "%/arm_nn_depthwise_conv_nt_t_s4.o",
    "%/arm_nn_depthwise_conv_nt_t_s8.o",
    "%/arm_nn_depthwise_conv_s8_core.o",
    "%/arm_nn_mat_mul_core_1x_s4.o",
    "%/arm_nn_mat_mul_core_1x_s8.o",
    "%/arm_nn_mat_mul_core_4x_s8.o",
    "%/arm_nn_mat_mult_nt_interleaved_t_even_s4.o",
    "%/arm_nn_mat_mult_nt_t_s16.o",
    "%/arm_nn_mat_mult_nt_t_s8_s32.o",
    "%/arm_nn_mat_mult_s8.o",
    "%/arm_relu6_s8.o",
    "%/arm_relu_q15.o",
    "%/arm_relu_q7.o",
    "%/arm_reshape_s8.o",
    "%/arm_softmax_u8.o",
)
"""Make patterns of what a CMSIS-NN build also leaves out: members no firmware links. Found
from the runner's link map against the archive with them; a member dropped here that a
firmware does need fails the runner's link (an undefined reference), it cannot go unseen.
Only for ``OPTIMIZED_KERNEL_DIR=cmsis_nn``: TFLM's reference kernels pull other members
(``add_common.o``, the tensor utilities)."""

NO_PCH = (
    # C++ sources that never include schema_generated.h: the precompiled header would
    # bring its parse-time cost (~1.5 CPU s a source: the templates the schema's inline
    # functions use are instantiated again in every source, precompiled or not) into
    # sources that have none; so they compile exactly as in TFLM's own build. A source
    # that starts including the schema only compiles slower, never differently.
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.o",
    "tensorflow/lite/core/c/common.o",
    "tensorflow/lite/kernels/internal/common.o",
    "tensorflow/lite/kernels/internal/portable_tensor_utils.o",
    "tensorflow/lite/kernels/internal/quantization_util.o",
    "tensorflow/lite/kernels/internal/tensor_ctypes.o",
    "tensorflow/lite/kernels/kernel_util.o",
    "tensorflow/lite/micro/cortex_m_generic/debug_log.o",
    "tensorflow/lite/micro/memory_planner/greedy_memory_planner.o",
    "tensorflow/lite/micro/memory_planner/linear_memory_planner.o",
    "tensorflow/lite/micro/micro_log.o",
    "tensorflow/lite/micro/tflite_bridge/micro_error_reporter.o",
    # Includes the schema but not micro/kernels/kernel_util.h, the kernels' precompiled
    # header: without one it costs ~2 CPU s more, a third precompiled header ~13.
    "tensorflow/lite/micro/kernels/softmax_common.o",
)
"""Make patterns of C++ objects compiled without the precompiled header."""

PCH_HEADERS = {
    "core": "tensorflow/lite/schema/schema_generated.h",
    "kernels": "tensorflow/lite/micro/kernels/kernel_util.h",
}
"""The header precompiled per optimization level (TFLM compiles its core and its kernels at
two levels): the schema for the core; for the kernels the header every kernel includes,
which brings the schema and TFLM's kernel API with it (~0.15 CPU s less a kernel)."""


def excluded(optimized_kernels: str | None) -> tuple[str, ...]:
    """What the archive leaves out for this kernel set: :data:`EXCLUDED`, and
    :data:`NEVER_LINKED` for CMSIS-NN."""
    return EXCLUDED + (NEVER_LINKED if optimized_kernels == "cmsis_nn" else ())


_OBJECT_DIRS = ("CORE_OBJDIR", "KERNEL_OBJDIR", "THIRD_PARTY_OBJDIR", "THIRD_PARTY_KERNEL_OBJDIR")
_SWEEP_MK = r"""
# Added by sweep (sweep/runtimes/cortex_m/library.py). TFLM's own objects, compile rules
# and flags; two things differ: only the objects SWEEP_WANT names (paths below obj/) are
# built, and every C++ object but SWEEP_NO_PCH is compiled with "-include sweep_pch.h", a
# header that includes the level's SWEEP_PCH_HEADER_<level>, whose precompiled form (built
# with that object's very flags) saves parsing it (the 1 MB schema header above all) in
# each translation unit. The objects are byte-identical to TFLM's own build.
SWEEP_ALL_OBJS := $(MICROLITE_LIB_OBJS) $(MICROLITE_KERNEL_OBJS)
SWEEP_ALL_OBJS += $(MICROLITE_THIRD_PARTY_OBJS) $(MICROLITE_THIRD_PARTY_KERNEL_OBJS)
SWEEP_OBJS := $(addprefix $(GENDIR)obj/,$(SWEEP_WANT))
SWEEP_PLAIN := $(foreach d,{dirs},$(addprefix $($(d)),$(SWEEP_NO_PCH)))

SWEEP_PCH := $(abspath $(GENDIR))/sweep_pch
SWEEP_PCH_LEVEL_core := $(CORE_OPTIMIZATION_LEVEL)
SWEEP_PCH_LEVEL_kernels := $(KERNEL_OPTIMIZATION_LEVEL)
SWEEP_CORE_CC := $(patsubst %.cc,%.o,$(filter %.cc,$(MICROLITE_CC_SRCS)))
SWEEP_KERNEL_CC := $(patsubst %.cc,%.o,$(filter %.cc,$(MICROLITE_CC_KERNEL_SRCS)))
SWEEP_CORE_CXX := $(filter $(SWEEP_OBJS),$(addprefix $(CORE_OBJDIR),$(SWEEP_CORE_CC)))
SWEEP_CORE_CXX := $(filter-out $(SWEEP_PLAIN),$(SWEEP_CORE_CXX))
SWEEP_KERNEL_CXX := $(filter $(SWEEP_OBJS),$(addprefix $(KERNEL_OBJDIR),$(SWEEP_KERNEL_CC)))
SWEEP_KERNEL_CXX := $(filter-out $(SWEEP_PLAIN),$(SWEEP_KERNEL_CXX))

SWEEP_PCH_CXX = $(CXX) $(CXXFLAGS) $(SWEEP_PCH_LEVEL_$*) $(INCLUDES) -x c++-header
$(SWEEP_PCH)/%/sweep_pch.h.gch:
	$(Q)$(MKDIR_P) $(dir $@)
	$(Q)echo '#include "$(SWEEP_PCH_HEADER_$*)"' > $(dir $@)sweep_pch.h
	$(Q)$(SWEEP_PCH_CXX) $(dir $@)sweep_pch.h -o $@

$(SWEEP_CORE_CXX): private CXXFLAGS += -include $(SWEEP_PCH)/core/sweep_pch.h
$(SWEEP_CORE_CXX): | $(SWEEP_PCH)/core/sweep_pch.h.gch
$(SWEEP_KERNEL_CXX): private CXXFLAGS += -include $(SWEEP_PCH)/kernels/sweep_pch.h
$(SWEEP_KERNEL_CXX): | $(SWEEP_PCH)/kernels/sweep_pch.h.gch

sweep_objects: $(SWEEP_OBJS)
	@echo 'SWEEP_OBJ_ROOT=$(GENDIR)obj/'
	@echo 'SWEEP_PLAIN=$(words $(filter $(SWEEP_PLAIN),$(SWEEP_OBJS)))'

sweep_print_flags:
	@echo 'SWEEP_CXXFLAGS=$(CXXFLAGS) $(CORE_OPTIMIZATION_LEVEL)'
	@echo 'SWEEP_CCFLAGS=$(CCFLAGS) $(CORE_OPTIMIZATION_LEVEL)'
	@echo 'SWEEP_INCLUDES=$(INCLUDES)'
	@echo 'SWEEP_OBJ_ROOT=$(GENDIR)obj/'
	@echo 'SWEEP_ALL_OBJS=$(SWEEP_ALL_OBJS)'
""".replace("{dirs}", " ".join(_OBJECT_DIRS))


@dataclass(frozen=True)
class Flags:
    """How to compile code against the library: TFLM's own flags, folders inside the
    third-party sources. ``cpu``: the ``-mcpu``/``-mfpu``/``-mfloat-abi`` subset for linking."""

    cxxflags: tuple[str, ...]
    cflags: tuple[str, ...]
    cpu: tuple[str, ...]


@dataclass(frozen=True)
class Library:
    """A ``libtensorflow-microlite.a`` for one CPU and operator set, of checked objects.

    ``root``: the cache entries' common prefix (``<root>-base``, ``<root>-op-<kernel>``);
    ``key``: names this library (CPU, sources, members) in the keys of what is built on it;
    ``operators``: the builtin operators whose kernels it holds (``None``: all).
    """

    cpu: str
    kernels: str | None
    root: Path
    key: str
    operators: frozenset[str] | None
    members: tuple[str, ...]
    archive_bytes: bytes
    build_seconds: float  # what compiling the missing objects took, when this call did
    built_now: bool  # True if this call compiled anything, False if all came from the cache

    def archive_copy(self, folder: Path) -> Path:
        """The checked archive written into ``folder`` (what a link should read: the
        bytes that were verified, not a file that might have changed since)."""
        path = Path(folder) / ARCHIVE
        path.write_bytes(self.archive_bytes)
        return path

    @property
    def flags(self) -> Flags:
        return compile_flags(self.cpu, self.kernels)

    @property
    def cxxflags(self) -> list[str]:
        return list(self.flags.cxxflags)

    @property
    def cflags(self) -> list[str]:
        return list(self.flags.cflags)


NOT_LIBRARY_SOURCES = (
    "tflite-micro/tensorflow/lite/micro/examples/",
    "tflite-micro/tensorflow/lite/micro/models/",
)
"""Folders of the third-party sources left out of the key: no library object comes from
them, and TFLM's Makefile writes C arrays of their models and images into them whenever
it is parsed (``*_model_data.cc``, ``*_image_data.cc``; :func:`compile_flags` parses it in
the third-party sources), so hashing them made the key of one and the same library depend
on whether any process had asked for the flags yet: another key, another build (minutes)."""


def _tree_digest(root: Path, leave_out: tuple[str, ...] = ()) -> str:
    """Hash of every file's path and bytes under ``root`` (~20 MB: a fraction of a second),
    but those whose path relative to ``root`` starts with one of ``leave_out``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(leave_out):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _sources_digest(third_party: Path) -> str:
    return _tree_digest(third_party, NOT_LIBRARY_SOURCES)


def cache_key(cpu: str, optimized_kernels: str | None) -> str:
    parts = [
        RECIPE_VERSION,
        _sources_digest(third_party_root()),
        " ".join(cpu_spec(cpu).make_args(optimized_kernels)),
        " ".join(excluded(optimized_kernels)),
        " ".join(NO_PCH),
        json.dumps(PCH_HEADERS, sort_keys=True),
        toolchain_version(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """``$SWEEP_FIRMWARE_CACHE`` or ``<outputs>/cache/firmware``.

    Like every folder a sweep writes to, it must lie inside the outputs folder,
    unless ``SWEEP_ALLOW_OUTSIDE_OUTPUTS=1`` says otherwise: the explicit opt-in
    for a cache shared between sweeps and machines (CI and the tests use
    ``~/.cache/sweep/firmware`` that way). A refused folder raises
    :class:`~sweep.settings.ConfigError` naming both ways out.
    """
    configured = os.environ.get("SWEEP_FIRMWARE_CACHE")
    if not configured:
        return outputs_root() / "cache" / "firmware"
    allowed = os.environ.get(ALLOW_OUTSIDE_ENV, "") == "1"
    check_inside_outputs(configured, "SWEEP_FIRMWARE_CACHE", allowed, f"{ALLOW_OUTSIDE_ENV}=1")
    return Path(configured).expanduser().resolve()


def cache_dir(cpu: str, optimized_kernels: str | None = "cmsis_nn") -> Path:
    """Where the library for ``cpu`` lives (or will): see the module docstring."""
    kernels = "" if optimized_kernels == "cmsis_nn" else f"-{optimized_kernels or 'reference'}"
    return cache_root() / f"{cpu}{kernels}-{cache_key(cpu, optimized_kernels)}"


def _make_env() -> dict[str, str]:
    # TFLM's Makefile runs python3 at parse time and needs numpy and Pillow: the venv's.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _make(cwd: Path, args: list[str], extra_makefile: Path, makefile: str = MAKEFILE) -> str:
    cmd = ["make", "-s", "-f", makefile, "-f", str(extra_makefile), *args]
    done = subprocess.run(
        cmd, cwd=cwd, env=_make_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"TFLM build failed ({' '.join(cmd)}):\n{tail}")
    return done.stdout


def _values(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("SWEEP_"))


def _downloads_farm(folder: Path) -> Path:
    """A ``downloads/`` folder of links into the third-party sources, plus Debian's GCC
    where TFLM's Makefile looks for its own (so it downloads nothing)."""
    downloads = folder / "downloads"
    downloads.mkdir()
    for source in sorted((third_party_root() / "downloads").iterdir()):
        (downloads / source.name).symlink_to(source)
    gcc_bin = downloads / "gcc_embedded" / "bin"
    gcc_bin.mkdir(parents=True)
    for program in sorted(toolchain_bin().glob("arm-none-eabi-*")):
        (gcc_bin / program.name).symlink_to(program)
    return downloads


def _trusted_includes(includes: str, downloads: Path) -> list[str]:
    """TFLM's ``-I`` folders, each mapped into the third-party sources."""
    third_party = third_party_root()
    tflm = third_party / "tflite-micro"
    mapped = []
    for flag in shlex.split(includes):
        if not flag.startswith("-I"):
            continue
        folder = flag[2:].rstrip("/")
        if folder in (".", str(tflm)):
            mapped.append(tflm)
        elif folder.startswith(str(downloads)):
            mapped.append(third_party / "downloads" / folder[len(str(downloads)) + 1 :])
        # gen/.../genfiles: example data generated at parse time; firmware needs none
    return [f"-I{path}" for path in dict.fromkeys(mapped)]


@dataclass(frozen=True)
class _Parsed:
    flags: Flags
    plan: Plan


@functools.cache
def _parse(cpu: str, optimized_kernels: str | None) -> _Parsed:
    """TFLM's compile flags and library plan for ``cpu``, asked of its Makefile in the
    third-party sources (a parse, no build: about 2 s of CPU, once per process and CPU)."""
    toolchain_bin()
    tflm = third_party_root() / "tflite-micro"
    with tempfile.TemporaryDirectory(prefix="sweep-tflm-flags-") as tmp:
        downloads = _downloads_farm(Path(tmp))
        extra = Path(tmp) / "sweep.mk"
        extra.write_text(_SWEEP_MK)
        args = [
            f"TENSORFLOW_ROOT={tflm}/",
            f"DOWNLOADS_DIR={downloads}",
            *cpu_spec(cpu).make_args(optimized_kernels),
            "sweep_print_flags",
        ]
        values = _values(_make(Path(tmp), args, extra, makefile=str(tflm / MAKEFILE)))
        includes = _trusted_includes(values["SWEEP_INCLUDES"], downloads)
        objects = values["SWEEP_ALL_OBJS"].split()
        members = normalize(objects, values["SWEEP_OBJ_ROOT"], tflm, downloads, DOWNLOADS)

    def flags(text: str) -> tuple[str, ...]:  # split as the shell running make's recipes would
        return (*(f for f in shlex.split(text) if f not in ("-MD", "-Werror")), *includes)

    cxxflags = flags(values["SWEEP_CXXFLAGS"])
    cpu_flags = tuple(f for f in cxxflags if f.startswith(("-mcpu", "-mfpu", "-mfloat")))
    return _Parsed(
        flags=Flags(cxxflags=cxxflags, cflags=flags(values["SWEEP_CCFLAGS"]), cpu=cpu_flags),
        plan=plan(members, excluded(optimized_kernels), tflm),
    )


def compile_flags(cpu: str, optimized_kernels: str | None = "cmsis_nn") -> Flags:
    """TFLM's compile flags for ``cpu`` (see :func:`_parse`)."""
    return _parse(cpu, optimized_kernels).flags


def library_plan(cpu: str, optimized_kernels: str | None = "cmsis_nn") -> Plan:
    """What ``cpu``'s library is made of (see :mod:`.library_plan`)."""
    return _parse(cpu, optimized_kernels).plan


def _copy_writable(src: Path, dst: Path) -> None:
    """Copy a read-only source tree so that make may write into it."""
    shutil.copytree(src, dst, symlinks=True)
    for path in [dst, *dst.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _compile(cpu: str, optimized_kernels: str | None, members: list[str]) -> dict[str, bytes]:
    """Compile ``members`` in a writable copy of TFLM (their relative source paths end up
    in the objects, exactly as in TFLM's own build): member -> the object's bytes."""
    with tempfile.TemporaryDirectory(prefix="sweep-tflm-", dir=cache_root()) as tmp:
        tflm = Path(tmp) / "tflm"
        _copy_writable(third_party_root() / "tflite-micro", tflm)
        downloads = tflm / DOWNLOADS
        downloads.mkdir(parents=True, exist_ok=True)
        for folder in sorted((third_party_root() / "downloads").iterdir()):
            _copy_writable(folder, downloads / folder.name)
        gcc_bin = downloads / "gcc_embedded" / "bin"
        gcc_bin.mkdir(parents=True)
        for program in sorted(toolchain_bin().glob("arm-none-eabi-*")):
            (gcc_bin / program.name).symlink_to(program)
        extra = Path(tmp) / "sweep.mk"
        extra.write_text(_SWEEP_MK)
        args = [
            *cpu_spec(cpu).make_args(optimized_kernels),
            f"SWEEP_WANT={' '.join(members)}",
            f"SWEEP_NO_PCH={' '.join(NO_PCH) if _worth_a_pch(members) else '%'}",
            *(f"SWEEP_PCH_HEADER_{level}={header}" for level, header in PCH_HEADERS.items()),
            f"-j{max(1, os.cpu_count() or 1)}",
            "sweep_objects",
        ]
        root = tflm / _values(_make(tflm, args, extra))["SWEEP_OBJ_ROOT"]
        return {member: (root / member).read_bytes() for member in members}


PCH_WORTH_FROM = 4
"""C++ objects a batch must compile for its precompiled header to pay: the header costs
~13 CPU s and saves ~3.5 CPU s per object (one new kernel: 16.1 CPU s with it, 8.0
without; three: 19.1 and 16.4). A smaller batch (a few new operators' kernels) compiles
every object plainly, as TFLM's own build does; the objects are the same either way."""


def _worth_a_pch(members: list[str]) -> bool:
    plain = {Path(p).name for p in NO_PCH}
    cxx = [m for m in members if m.startswith(("core/", "kernels/")) and Path(m).name not in plain]
    return len(cxx) >= PCH_WORTH_FROM


def _unit_of(member: str, plan: Plan) -> str:
    """The cache unit holding ``member``: ``base``, or ``op-<kernel>`` for an operator's."""
    return f"op-{Path(member).stem}" if member in plan.operator_members else "base"


def _units(members: tuple[str, ...], plan: Plan) -> dict[str, tuple[str, ...]]:
    """``members`` (the common part's among them) by the cache unit holding them."""
    units: dict[str, list[str]] = {}
    for member in members:
        units.setdefault(_unit_of(member, plan), []).append(member)
    return {unit: tuple(found) for unit, found in units.items()}


def _objects(
    cpu: str, optimized_kernels: str | None, prefix: Path, units: dict[str, tuple[str, ...]]
) -> tuple[dict[str, bytes], float]:
    """Every member's checked object bytes, compiling the units not cached yet (one make
    for all of them, under the CPU's lock so concurrent processes compile them once), and
    the seconds that compile took (0.0 if nothing was missing)."""

    def entry(unit: str) -> Path:
        return prefix.with_name(f"{prefix.name}-{unit}")

    def cached(unit: str) -> dict[str, bytes] | None:
        try:
            return verify(entry(unit), units[unit])
        except BadEntry:
            return None

    found = {unit: cached(unit) for unit in units}
    missing = [unit for unit, files in found.items() if files is None]
    seconds = 0.0
    if missing:
        with locked(prefix.with_name(prefix.name + ".lock")):
            found.update((unit, cached(unit)) for unit in missing)  # another process's?
            missing = [unit for unit in missing if found[unit] is None]
            if missing:
                wanted = [m for unit in missing for m in units[unit]]
                log.info(
                    "compiling %d TFLM + CMSIS-NN objects for %s (%s), once: later runs "
                    "reuse them from %s-*",
                    len(wanted),
                    cpu,
                    "the common part and " * ("base" in missing)
                    + f"{len(missing) - ('base' in missing)} operator kernel(s)",
                    prefix,
                )
                start = time.perf_counter()
                built = _compile(cpu, optimized_kernels, wanted)
                seconds = time.perf_counter() - start
                for unit in missing:
                    write = functools.partial(_write_objects, built, units[unit])
                    found[unit], _ = fetch(entry(unit), write, units[unit], lambda files: files)
    objects: dict[str, bytes] = {}
    for files in found.values():
        objects.update(files or {})
    return objects, seconds


def _write_objects(built: dict[str, bytes], members: tuple[str, ...], folder: Path) -> None:
    for member in members:
        path = folder / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(built[member])


_ARCHIVES: dict[str, bytes] = {}
"""Archives made in this process, by the digest of their members' names and checked bytes:
writing ~150 objects and running ``ar`` takes ~0.1 s, more than a model's board figures."""


def _archive(members: tuple[str, ...], objects: dict[str, bytes]) -> bytes:
    """``libtensorflow-microlite.a`` of ``members`` in this order, as TFLM's build makes it
    (one ``ar`` of fresh objects: members that share a name are all kept)."""
    digest = hashlib.sha256()
    for member in members:
        digest.update(member.encode() + b"\0" + hashlib.sha256(objects[member]).digest())
    known = _ARCHIVES.get(digest.hexdigest())
    if known is None:
        known = _ARCHIVES[digest.hexdigest()] = _run_ar(members, objects)
    return known


def _run_ar(members: tuple[str, ...], objects: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="sweep-archive-") as tmp:
        paths = []
        for index, member in enumerate(members):
            path = Path(tmp) / f"{index:03d}" / Path(member).name
            path.parent.mkdir()
            path.write_bytes(objects[member])
            paths.append(str(path))
        archive = Path(tmp) / ARCHIVE
        done = subprocess.run(
            [tool("ar"), "rcD", str(archive), *paths], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"archiving the TFLM library failed: {done.stderr.strip()}")
        return archive.read_bytes()


def build_library(
    cpu: str,
    optimized_kernels: str | None = "cmsis_nn",
    operators: Iterable[str] | None = None,
) -> Library:
    """The TFLM library for ``cpu`` with the kernels of ``operators`` (builtin operator
    names, e.g. ``CONV_2D``; ``None``: every operator): from the cache (checked), with
    what is missing compiled once (the common part: a minute or two per CPU; an operator
    kernel: seconds).

    ``optimized_kernels=None`` builds TFLM's reference kernels instead of
    CMSIS-NN (to measure what CMSIS-NN gains).
    """
    cpu_spec(cpu)
    toolchain_bin()
    check_newlib()
    prefix = cache_dir(cpu, optimized_kernels)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    wanted = None if operators is None else frozenset(operators)
    tflm = third_party_root() / "tflite-micro"
    members = library_plan(cpu, optimized_kernels).members_for(wanted, builtins(tflm))
    units = _units(members, library_plan(cpu, optimized_kernels))
    objects, seconds = _objects(cpu, optimized_kernels, prefix, units)
    if seconds:
        log.info("compiled the %s objects in %.0f s", cpu, seconds)
    digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:12]
    return Library(
        cpu=cpu,
        kernels=optimized_kernels,
        root=prefix,
        key=f"{prefix.name}-{digest}",
        operators=wanted,
        members=members,
        archive_bytes=_archive(members, objects),
        build_seconds=round(seconds, 1),
        built_now=seconds > 0,
    )

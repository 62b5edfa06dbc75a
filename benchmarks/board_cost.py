"""What the board figures of one model cost, before (a firmware build per model) and after
(the per-CPU runner and the cached footprint), side by side, on the same models and seed.

For each model and CPU, in one run: the per-model build against the whole library
(:func:`sweep.runtimes.cortex_m.emulate_per_model` with ``whole_library=True``: compile the
bundle and the harness, link against every operator's kernel as every build did before the
library was kept per operator, emulate counting every instruction) and the runner (on the
library of the model's operators only)
(:func:`sweep.runtimes.cortex_m.emulate`), on the same inputs (seed 0 / the same test
images), with

- instructions per inference, ``firmware_flash_bytes``, ``firmware_ram_bytes`` and the
  arena of each, and whether they are identical (they must be, on every model);
- the wall and CPU seconds of each per model: "before" the per-model build and
  emulation, "after (first)" the runner as a sweep meets the model (a footprint build if
  its operator set and arena class are new, and a runner build if its operator set is: by
  default the run uses a throw-away copy of the firmware cache holding only the libraries'
  objects, so no runner or footprint is cached from an earlier run), "after (again)" the
  same model once more (everything cached);
- the median of each over the reference grid's int8 models, and where the time goes:
  the median of each part of a call (library look-up, Unicorn set-up, the uncounted
  stretches, the counted invoke under the block hook, the instruction mix's decoding,
  the footprint, the per-model compile and link, the rest).

CPU seconds are this process's plus the compilers' and linkers' it waited for.

Models: the reference grid's int8 sequences on MNIST (cnn and separable_cnn, each with
no pre-training, pruning and QAT; one epoch of training: the weights hardly matter to
the cost, the operators and shapes are the grid's), the reference CNN in float32, and
the MLPerf Tiny int8 models (keyword spotting, ResNet-8) when ``../shared/mlperf_tiny``
is there.

With ``--library``, the one-off library build per CPU is measured too, twice on the same
sources: TFLM's own ``make microlite`` (what the library build was before) and
:func:`sweep.runtimes.cortex_m.build_library` (trimmed sources, precompiled schema
header, compiled per operator: first the common part and the reference CNN's kernels with
its runner, what a board sweep's first model waits for, then every other kernel), wall and
CPU seconds, and every member of the new whole archive is compared byte for byte with the
same member of TFLM's full archive. Minutes of both cores per CPU;
``--library-only`` measures just that.

    .venv/bin/python benchmarks/board_cost.py                         # cortex-m4f
    .venv/bin/python benchmarks/board_cost.py --cpus cortex-m4f cortex-m7
    .venv/bin/python benchmarks/board_cost.py --library-only --cpus cortex-m4f cortex-m7

Wall times on a shared machine are upper bounds; the instruction counts and sizes are
exact and repeat. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

ROOT = Path(__file__).resolve().parents[1]
MLPERF = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def grid_models(images: int) -> dict[str, tuple[bytes, np.ndarray]]:
    """The reference grid's int8 sequences on MNIST, plus the CNN in float32."""
    from sweep.backend import keras
    from sweep.groups.dataset import ImageDataset
    from sweep.groups.model import ConvNet
    from sweep.groups.pretrain import NoPretrain, Pruning, QuantizationAware
    from sweep.groups.quantize import Float32, FullInteger
    from sweep.groups.train import FitTrainer

    data = ImageDataset(name="mnist", path=str(ROOT / "tests" / "data" / "mnist")).load()
    models = {}
    for builder in (ConvNet(), ConvNet(separable=True)):
        name = "separable_cnn" if builder.separable else "cnn"
        for pretrain in (NoPretrain(), Pruning(fine_tune_epochs=1), QuantizationAware()):
            keras.utils.set_random_seed(0)
            trainer = FitTrainer(epochs=1)
            model = builder.build(data.input_shape, data.num_classes)
            trainer.fit(model, data.x_train, data.y_train)
            model = pretrain.apply(model, data.x_train, data.y_train, trainer)
            with pretrain.load_scope():
                tflite = FullInteger(calibration_samples=200).convert(model, data.x_train)
            models[f"{name} {pretrain.name} int8"] = (tflite, data.x_test[:images])
            if name == "cnn" and pretrain.name == "none":
                float32 = Float32().convert(model, data.x_train)
                models["cnn none float32"] = (float32, data.x_test[:images])
    return models


def mlperf_models() -> dict[str, tuple[bytes, None]]:
    found = {}
    for name, file in (
        ("MLPerf KWS int8", "kws_ref_model.tflite"),
        ("MLPerf IC int8", "ic_resnet8_int8.tflite"),
    ):
        path = MLPERF / file
        if path.exists():
            found[name] = (path.read_bytes(), None)
        else:
            print(f"skipped {name}: {path} not found (set SWEEP_MLPERF_TINY)", file=sys.stderr)
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(function, *args):
    """``function(*args)``, its wall seconds and its CPU seconds (this process and the
    compilers and linkers it waited for): on a shared machine the wall time says how busy
    the machine was, the CPU time what the work itself costs. ``LAST_PARTS`` then holds
    the call's parts (:func:`instrument`), with what they leave as :data:`REST`."""
    PARTS.clear()
    wall, cpu = time.perf_counter(), time.process_time() + _children_cpu()
    result = function(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() + _children_cpu() - cpu
    parts = dict(PARTS)
    parts[REST] = [
        wall - sum(v[0] for v in PARTS.values()),
        cpu - sum(v[1] for v in PARTS.values()),
    ]
    LAST_PARTS.clear()
    LAST_PARTS.update(parts)
    return result, wall, cpu


LAST_PARTS: dict[str, list[float]] = {}


def tflm_microlite(cpu: str, folder: Path) -> tuple[float, float, Path]:
    """TFLM's own full ``make microlite`` for ``cpu``: wall s, CPU s, the archive."""
    from sweep.runtimes.cortex_m import library
    from sweep.runtimes.cortex_m.cpus import cpu_spec

    tflm = folder / "tflm"
    start, cpu_start = time.perf_counter(), _children_cpu()
    library._copy_writable(library.third_party_root() / "tflite-micro", tflm)
    downloads = tflm / library.DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    for source in sorted((library.third_party_root() / "downloads").iterdir()):
        library._copy_writable(source, downloads / source.name)
    gcc = downloads / "gcc_embedded" / "bin"
    gcc.mkdir(parents=True)
    for program in sorted(library.toolchain_bin().glob("arm-none-eabi-*")):
        (gcc / program.name).symlink_to(program)
    args = [*cpu_spec(cpu).make_args(), f"-j{os.cpu_count() or 1}", "microlite"]
    subprocess.run(
        ["make", "-s", "-f", library.MAKEFILE, *args],
        cwd=tflm,
        env=library._make_env(),
        check=True,
        capture_output=True,
    )
    archive = next(tflm.glob("gen/*/lib/libtensorflow-microlite.a"))
    return time.perf_counter() - start, _children_cpu() - cpu_start, archive


def archive_members(data: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of every member of a GNU ``ar`` archive, in order."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    at, names, members = 8, b"", []
    while at + 60 <= len(data):
        header = data[at : at + 60]
        name, size = header[:16].decode().strip(), int(header[48:58])
        body = data[at + 60 : at + 60 + size]
        at += 60 + size + (size % 2)
        if name == "//":
            names = body
        elif name == "/" or name.startswith("/SYM"):
            continue
        else:
            if name.startswith("/") and name[1:].isdigit():
                offset = int(name[1:])
                name = names[offset : names.index(b"/\n", offset)].decode()
            members.append((name.rstrip("/"), body))
    return members


def compare_archives(new: bytes, full: bytes) -> tuple[int, int, int]:
    """(members of the new archive, of the full one, new members not byte-identical to the
    full archive's member at the same place in the order)."""
    ours, theirs = archive_members(new), archive_members(full)
    it = iter(theirs)
    mismatched = 0
    for name, body in ours:
        for other, other_body in it:
            if other == name:
                mismatched += other_body != body
                break
        else:
            mismatched += 1
    return len(ours), len(theirs), mismatched


REFERENCE_CNN_OPERATORS = frozenset(
    {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}
)
"""The builtin operators of the reference CNN in int8: what a board sweep's first model needs."""


def measure_library(cpu: str, full: bool = True, trimmed: bool = True) -> list[str]:
    """Both library builds of ``cpu`` on the same sources, one after the other, the new one
    into a throw-away cache folder (the shared cache is left alone); ``full`` False: the
    new one only; ``trimmed`` False: TFLM's own only, its archive compared with the cached
    library's."""
    from sweep.runtimes.cortex_m import build_library
    from sweep.runtimes.cortex_m.runner import runner_for

    def load() -> str:
        return "/".join(f"{x:.0f}" for x in os.getloadavg())

    lines, whole = [], b""
    if full:
        with tempfile.TemporaryDirectory(prefix="sweep-tflm-full-") as tmp:
            before_load = load()
            wall, cpu_s, archive = tflm_microlite(cpu, Path(tmp))
            what = "TFLM `make microlite` (before)"
            lines.append(f"| {cpu} | {what} | {wall:.0f} | {cpu_s:.0f} | {before_load} |")
            whole = archive.read_bytes()
    if trimmed:
        saved = os.environ.get("SWEEP_FIRMWARE_CACHE")
        with tempfile.TemporaryDirectory(prefix="sweep-firmware-cache-") as cache:
            os.environ["SWEEP_FIRMWARE_CACHE"] = cache
            try:
                before_load = load()
                start, cpu_start = time.perf_counter(), _children_cpu()
                runner_for(build_library(cpu, operators=REFERENCE_CNN_OPERATORS))
                wall, cpu_s = time.perf_counter() - start, _children_cpu() - cpu_start
                what = "common part + the reference CNN's kernels, with its runner (after)"
                lines.append(f"| {cpu} | {what} | {wall:.0f} | {cpu_s:.0f} | {before_load} |")
                before_load = load()
                start, cpu_start = time.perf_counter(), _children_cpu()
                lib = build_library(cpu)
                wall, cpu_s = time.perf_counter() - start, _children_cpu() - cpu_start
            finally:
                os.environ.pop("SWEEP_FIRMWARE_CACHE")
                if saved is not None:
                    os.environ["SWEEP_FIRMWARE_CACHE"] = saved
        what = "then every other operator's kernel (the whole library)"
        lines.append(f"| {cpu} | {what} | {wall:.0f} | {cpu_s:.0f} | {before_load} |")
    else:
        lib = build_library(cpu)  # the cached one: only its archive is compared
    if not full:
        return lines
    kept, total, mismatched = compare_archives(lib.archive_bytes, whole)
    lines.append(
        f"| {cpu} | archive: {kept} of {total} members kept, {mismatched} not byte-identical "
        "to TFLM's | | | |"
    )
    return lines


PARTS: dict[str, list[float]] = {}
"""Wall and CPU seconds per part of the call being timed (filled by :func:`instrument`)."""
REST = "the rest (checks, cache look-ups, budget, I/O block)"


def instrument() -> None:
    """Time the parts of every emulation from now on, per call (see :func:`timed`)."""
    from sweep.runtimes.cortex_m import emulator as em
    from sweep.runtimes.cortex_m import per_model
    from sweep.runtimes.cortex_m import run as runner_run

    def timing(name: str, function):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time() + _children_cpu()
            try:
                return function(*args, **kwargs)
            finally:
                part = PARTS.setdefault(name, [0.0, 0.0])
                part[0] += time.perf_counter() - wall
                part[1] += time.process_time() + _children_cpu() - cpu

        return wrapper

    em.CortexM.__init__ = timing("Unicorn set-up, memory map, ELF loaded", em.CortexM.__init__)
    em.CortexM.advance = timing(
        "uncounted: start-up, warm-up, images (no hook)", em.CortexM.advance
    )
    em.CortexM.run = timing("counted under the block hook", em.CortexM.run)
    em.Run.mix = timing("instruction mix (blocks decoded by Capstone)", em.Run.mix)
    runner_run.build_library = timing(
        "library + runner entries (checked)", runner_run.build_library
    )
    runner_run.runner_for = timing("library + runner entries (checked)", runner_run.runner_for)
    runner_run.footprint = timing(
        "footprint (cached, or one compile + 17 links)", runner_run.footprint
    )
    per_model.build_library = timing("library + runner entries (checked)", per_model.build_library)
    per_model.FirmwareBuilder.build = timing(
        "per-model compile + link", per_model.FirmwareBuilder.build
    )


def cold_footprint_cache(cpus: list[str], folder: Path) -> None:
    """Point ``SWEEP_FIRMWARE_CACHE`` at ``folder`` holding copies of the libraries' object
    entries only (every one the shared cache has for these CPUs): every runner and footprint
    is built as a sweep would meet its operator set first."""
    import shutil

    from sweep.runtimes.cortex_m.library import cache_dir

    for cpu in cpus:
        prefix = cache_dir(cpu)
        for unit in ["base", *(p.name for p in prefix.parent.glob(f"{prefix.name}-op-*"))]:
            entry = prefix.parent / (
                unit if unit.startswith(prefix.name) else f"{prefix.name}-{unit}"
            )
            if entry.is_dir():
                shutil.copytree(entry, folder / entry.name, symlinks=True)
    os.environ["SWEEP_FIRMWARE_CACHE"] = str(folder)


def count_only_run(
    self, stop_at, marks=None, timeout_s=600.0, max_instructions=None, *, resume=False
):
    """``CortexM.run`` as it was before the instruction mix (commit 43e25b1): the block
    hook only counts instructions and records the marks."""
    import unicorn
    from unicorn import arm_const

    from sweep.runtimes.cortex_m import emulator as em

    uc, marks = self.uc, dict(marks or {})
    sizes: dict[tuple[int, int], int] = {}
    state = em.Run(instructions=0)
    seen = state.marks
    budget = -1 if max_instructions is None else max_instructions

    def on_block(uc_, address, size, _data):
        key = (address, size)
        n = sizes.get(key)
        if n is None:
            n = sizes[key] = em.thumb_instruction_count(bytes(uc_.mem_read(address, size)))
        if address in marks:
            seen.append((marks[address], state.instructions))
        state.instructions += n
        state.blocks += 1
        if state.instructions > budget >= 0:
            uc_.emu_stop()

    start = self._start_pc(resume)
    hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    self._fresh_translation(stop_at, everything=True)
    self._hooked_blocks = True
    try:
        uc.emu_start(start, stop_at & ~1, timeout=int(timeout_s * 1e6))
    finally:
        uc.hook_del(hook)
    if uc.reg_read(arm_const.UC_ARM_REG_PC) != stop_at & ~1:
        raise RuntimeError("the count-only run did not finish")
    return state


def hook_cost(models: dict, cpu: str, images: int, repeats: int) -> list[str]:
    """CPU seconds of the per-model build's whole emulated run (every instruction under the
    block hook) with the hook before the instruction mix and with today's, alternated in
    one process; and decoding the counted invoke's blocks into the mix, cold and warm."""
    from cortex_m_instructions import arena, model_inputs
    from unicorn import arm_const

    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import build_library, cpu_spec, isa_classes
    from sweep.runtimes.cortex_m import emulator as em
    from sweep.runtimes.cortex_m.firmware import FirmwareBuilder, bundle_arena_bytes
    from sweep.runtimes.cortex_m.protocol import execute, invoke_windows

    cpu_model = getattr(arm_const, cpu_spec(cpu).unicorn_model)
    lib = build_library(cpu)
    today = em.CortexM.run
    lines = []
    with tempfile.TemporaryDirectory(prefix="sweep-hook-cost-") as tmp:
        for name, (model, pictures) in models.items():
            bundle = Path(tmp) / name.replace(" ", "_")
            write_bundle(model, bundle, arena_bytes=arena(model))
            inputs = model_inputs(model, pictures, images)
            firmware = FirmwareBuilder(lib, bundle, bundle / "build").build(
                bundle_arena_bytes(bundle)
            )
            spent = {"count only": [], "count + mix records": []}
            for _ in range(repeats):
                for variant, run in (
                    ("count only", count_only_run),
                    ("count + mix records", today),
                ):
                    em.CortexM.run = run
                    try:
                        start = time.process_time()
                        _, result, _ = execute(firmware, cpu_model, inputs)
                        spent[variant].append(time.process_time() - start)
                    finally:
                        em.CortexM.run = today
            window = invoke_windows(result.marks)[1]
            isa_classes._profile.cache_clear()
            isa_classes._decode_one.cache_clear()
            start = time.process_time()
            result.mix(*window)
            cold = time.process_time() - start
            start = time.process_time()
            result.mix(*window)
            warm = time.process_time() - start
            before, after = (statistics.median(v) for v in spent.values())
            lines.append(
                f"| {name} | {cpu} | {result.instructions:,} | {result.blocks:,} | "
                f"{before:.2f} | {after:.2f} | {after / before:.2f}x | {cold:.2f} | {warm:.3f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def _median_parts(calls: list[dict[str, list[float]]]) -> list[str]:
    names = list(dict.fromkeys(name for call in calls for name in call))
    names.sort(key=lambda name: name == REST)
    lines = []
    for name in names:
        wall = statistics.median(call.get(name, [0.0, 0.0])[0] for call in calls)
        cpu = statistics.median(call.get(name, [0.0, 0.0])[1] for call in calls)
        lines.append(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", nargs="+", default=["cortex-m4f"])
    parser.add_argument("--images", type=int, default=10, help="images per model (>= 1)")
    parser.add_argument("--library", action="store_true", help="also time the library builds")
    parser.add_argument("--library-only", action="store_true", help="only time the library builds")
    parser.add_argument(
        "--no-tflm-build",
        action="store_true",
        help="time only the trimmed library build, not TFLM's own full one before it",
    )
    parser.add_argument(
        "--no-trimmed-build",
        action="store_true",
        help="time only TFLM's own full build; compare its archive with the cached library's",
    )
    parser.add_argument("--no-mlperf", action="store_true", help="skip the MLPerf models")
    parser.add_argument(
        "--hooks",
        type=int,
        metavar="REPEATS",
        help="only compare the block hook before and after the instruction mix (per-model "
        "runs, REPEATS alternated runs each) on the first CPU",
    )
    parser.add_argument(
        "--warm-footprints",
        action="store_true",
        help="use the firmware cache as it is (default: a throw-away copy holding only the "
        "libraries and runners, so each new operator set and arena class builds its footprint)",
    )
    parser.add_argument(
        "--only", nargs="*", help="only the models whose name contains one of these words"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from cortex_m_instructions import arena, model_inputs

    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import build_library, emulate, emulate_per_model
    from sweep.runtimes.cortex_m.run import model_operators
    from sweep.runtimes.flatbuffer import operator_codes

    library_lines = []
    for cpu in args.cpus:
        if args.library or args.library_only:
            library_lines += measure_library(
                cpu, full=not args.no_tflm_build, trimmed=not args.no_trimmed_build
            )
            print("\n".join(library_lines[-3:]), file=sys.stderr, flush=True)
    if args.hooks:
        models = grid_models(args.images)
        models = {k: v for k, v in models.items() if k in ("cnn none int8", "cnn none float32")}
        if not args.no_mlperf:
            models.update(mlperf_models())
        if args.only:
            models = {k: v for k, v in models.items() if any(w in k for w in args.only)}
        lines = hook_cost(models, args.cpus[0], args.images, args.hooks)
        print(
            f"\n{args.images} image(s) per model, median of {args.hooks} runs each; CPU s of the "
            "whole per-model run under the hook\n\n"
            "| model | cpu | instructions per run | blocks per run | count only (before the mix) "
            "| count + mix records (today) | ratio | mix decode, cold | mix decode, warm |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        print("\n".join(lines))
        return 0
    if args.library_only:
        print(
            "| cpu | library build | wall s | CPU s | load (1/5/15 min) at start |\n"
            "| --- | --- | ---: | ---: | --- |"
        )
        print("\n".join(library_lines))
        return 0
    models = grid_models(args.images)
    if not args.no_mlperf:
        models.update(mlperf_models())
    if args.only:
        models = {k: v for k, v in models.items() if any(w in k for w in args.only)}
    for cpu in args.cpus:  # "library cached": every library compiled before anything is timed
        build_library(cpu)  # the whole library, which "before" links against
        for model, _ in models.values():
            build_library(cpu, operators=model_operators(operator_codes(model)))
    rows, all_equal = [], True
    firsts: list[tuple[float, ...]] = []
    parts: dict[str, list[dict[str, list[float]]]] = {"before": [], "first": [], "again": []}
    with tempfile.TemporaryDirectory(prefix="sweep-board-cost-") as tmp:
        if not args.warm_footprints:
            (Path(tmp) / "cache").mkdir()
            cold_footprint_cache(args.cpus, Path(tmp) / "cache")
        instrument()
        for name, (model, images) in models.items():
            bundle = Path(tmp) / name.replace(" ", "_")
            write_bundle(model, bundle, arena_bytes=arena(model))
            inputs = model_inputs(model, images, args.images)
            for cpu in args.cpus:
                grid_int8 = name.endswith("int8") and not name.startswith("MLPerf")
                before, t_before, c_before = timed(
                    functools.partial(emulate_per_model, whole_library=True), bundle, cpu, inputs
                )
                if grid_int8:
                    parts["before"].append(dict(LAST_PARTS))
                after, t_first, c_first = timed(emulate, bundle, cpu, inputs)
                if grid_int8:
                    parts["first"].append(dict(LAST_PARTS))
                again, t_again, c_again = timed(emulate, bundle, cpu, inputs)
                if grid_int8:
                    parts["again"].append(dict(LAST_PARTS))
                same = (
                    before.instructions == after.instructions == again.instructions
                    and before.firmware_flash_bytes == after.firmware_flash_bytes
                    and before.firmware_ram_bytes == after.firmware_ram_bytes
                    and before.arena_bytes == after.arena_bytes
                    and np.array_equal(before.outputs, after.outputs)
                    and np.array_equal(before.predictions, after.predictions)
                )
                all_equal &= same
                if grid_int8:
                    firsts.append((t_first, c_first, t_again, c_again, t_before, c_before))
                rows.append(
                    (
                        name,
                        cpu,
                        f"{before.instructions:,}",
                        f"{after.instructions:,}",
                        f"{before.firmware_flash_bytes:,} / {before.firmware_ram_bytes:,}",
                        f"{after.firmware_flash_bytes:,} / {after.firmware_ram_bytes:,}",
                        "yes" if same else "**NO**",
                        f"{t_before:.2f} / {c_before:.2f}",
                        f"{t_first:.2f} / {c_first:.2f}",
                        f"{t_again:.2f} / {c_again:.2f}",
                    )
                )
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    header = (
        "model",
        "cpu",
        "instructions before",
        "instructions after",
        "flash / RAM before",
        "flash / RAM after",
        "identical",
        "before: wall / CPU s",
        "after (first): wall / CPU s",
        "after (again): wall / CPU s",
    )
    load = os.getloadavg()
    print(
        f"\n{args.images} image(s) per model; load average {load[0]:.1f} on "
        f"{os.cpu_count()} cores at the end\n"
    )
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(header))) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if firsts:
        medians = [statistics.median(column) for column in zip(*firsts, strict=True)]
        print(
            "\nmedian over the grid's int8 models "
            f"({len(firsts)} model x CPU pairs): after (first) {medians[0]:.2f} s wall / "
            f"{medians[1]:.2f} s CPU; after (again) {medians[2]:.2f} s wall / "
            f"{medians[3]:.2f} s CPU; before {medians[4]:.2f} s wall / {medians[5]:.2f} s CPU"
        )
    print(
        f"counts, flash, RAM, arena, outputs and predictions identical on every model: {all_equal}"
    )
    for what, calls in parts.items():
        if calls:
            print(f"\nWhere the time goes, {what} (median per part over the grid's int8 models):\n")
            print("| part | wall s | CPU s |\n| --- | ---: | ---: |")
            print("\n".join(_median_parts(calls)))
    if library_lines:
        print(
            "\n| cpu | library build | wall s | CPU s | load (1/5/15 min) at start |\n"
            "| --- | --- | ---: | ---: | --- |"
        )
        print("\n".join(library_lines))
    return 0 if all_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What the board figures of one model cost, before (a firmware build per model) and after
(the per-CPU runner and the cached footprint), side by side, on the same models and seed.

For each model and CPU, in one run: the per-model build
(:func:`sweep.runtimes.cortex_m.emulate_per_model`: compile the bundle and the harness,
link, emulate counting every instruction) and the runner
(:func:`sweep.runtimes.cortex_m.emulate`), on the same inputs (seed 0 / the same test
images), with

- instructions per inference, ``firmware_flash_bytes``, ``firmware_ram_bytes`` and the
  arena of each, and whether they are identical (they must be, on every model);
- the wall time of each per model: "before" the per-model build and emulation, "after
  (first)" the runner as a sweep meets the model (a footprint build if its operator set
  and arena are new), "after (again)" the same model once more (everything cached);
- the median of "after (first)" over the reference grid's int8 models.

Models: the reference grid's int8 sequences on MNIST (cnn and separable_cnn, each with
no pre-training, pruning and QAT; one epoch of training: the weights hardly matter to
the cost, the operators and shapes are the grid's), the reference CNN in float32, and
the MLPerf Tiny int8 models (keyword spotting, ResNet-8) when ``../shared/mlperf_tiny``
is there.

With ``--library``, the one-off library build per CPU is measured too, twice on the same
sources: TFLM's own ``make microlite`` (what the library build was before) and
:func:`sweep.runtimes.cortex_m.build_library` (trimmed sources, precompiled schema
header), wall and CPU seconds, and every member of the new archive is compared byte for
byte with the same member of TFLM's full archive. Minutes of both cores per CPU.

    .venv/bin/python benchmarks/board_cost.py                         # cortex-m4f
    .venv/bin/python benchmarks/board_cost.py --cpus cortex-m4f cortex-m7 --library

Wall times on a shared machine are upper bounds; the instruction counts and sizes are
exact and repeat. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
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
    the machine was, the CPU time what the work itself costs."""
    wall, cpu = time.perf_counter(), time.process_time() + _children_cpu()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() + _children_cpu() - cpu


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


def measure_library(cpu: str) -> list[str]:
    """Both library builds of ``cpu`` on the same sources, one after the other, the new one
    into a throw-away cache folder (the shared cache is left alone)."""
    from sweep.runtimes.cortex_m import build_library
    from sweep.runtimes.cortex_m.runner import runner_for

    def load() -> str:
        return "/".join(f"{x:.0f}" for x in os.getloadavg())

    lines = []
    with tempfile.TemporaryDirectory(prefix="sweep-tflm-full-") as tmp:
        before_load = load()
        wall, cpu_s, archive = tflm_microlite(cpu, Path(tmp))
        what = "TFLM `make microlite` (before)"
        lines.append(f"| {cpu} | {what} | {wall:.0f} | {cpu_s:.0f} | {before_load} |")
        full = archive.read_bytes()
    saved = os.environ.get("SWEEP_FIRMWARE_CACHE")
    with tempfile.TemporaryDirectory(prefix="sweep-firmware-cache-") as cache:
        os.environ["SWEEP_FIRMWARE_CACHE"] = cache
        try:
            before_load = load()
            start, cpu_start = time.perf_counter(), _children_cpu()
            lib = build_library(cpu)
            runner_for(lib)
            wall, cpu_s = time.perf_counter() - start, _children_cpu() - cpu_start
        finally:
            os.environ.pop("SWEEP_FIRMWARE_CACHE")
            if saved is not None:
                os.environ["SWEEP_FIRMWARE_CACHE"] = saved
    what = "trimmed + precompiled header, with the runner (after)"
    lines.append(f"| {cpu} | {what} | {wall:.0f} | {cpu_s:.0f} | {before_load} |")
    kept, total, mismatched = compare_archives(lib.archive_bytes, full)
    lines.append(
        f"| {cpu} | archive: {kept} of {total} members kept, {mismatched} not byte-identical "
        "to TFLM's | | | |"
    )
    return lines


def breakdown(bundle: Path, cpu: str, inputs: np.ndarray) -> list[str]:
    """Where one warm ``emulate`` call spends its time (wall and CPU seconds)."""
    from sweep.runtimes.cortex_m import emulate
    from sweep.runtimes.cortex_m import emulator as em

    spent: dict[str, list[float]] = {}

    def timing(name: str, function):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                part = spent.setdefault(name, [0.0, 0.0])
                part[0] += time.perf_counter() - wall
                part[1] += time.process_time() - cpu

        return wrapper

    saved = em.CortexM.__init__, em.CortexM.advance, em.CortexM.run
    em.CortexM.__init__ = timing("Unicorn set-up, memory map, ELF loaded", saved[0])
    em.CortexM.advance = timing("uncounted: start-up, warm-up, images (no hook)", saved[1])
    em.CortexM.run = timing("counted invoke (block hook)", saved[2])
    try:
        emulate(bundle, cpu, inputs)  # warm
        spent.clear()
        _, wall, cpu_s = timed(emulate, bundle, cpu, inputs)
    finally:
        em.CortexM.__init__, em.CortexM.advance, em.CortexM.run = saved
    rest = "the rest (checks, cache look-ups, I/O block, footprint)"
    spent[rest] = [
        wall - sum(v[0] for v in spent.values()),
        cpu_s - sum(v[1] for v in spent.values()),
    ]
    lines = [f"| {name} | {w:.3f} | {c:.3f} |" for name, (w, c) in spent.items()]
    return [*lines, f"| total | {wall:.3f} | {cpu_s:.3f} |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", nargs="+", default=["cortex-m4f"])
    parser.add_argument("--images", type=int, default=10, help="images per model (>= 1)")
    parser.add_argument("--library", action="store_true", help="also time the library builds")
    parser.add_argument("--no-mlperf", action="store_true", help="skip the MLPerf models")
    parser.add_argument(
        "--only", nargs="*", help="only the models whose name contains one of these words"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from cortex_m_instructions import arena, model_inputs

    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import build_library, emulate, emulate_per_model
    from sweep.runtimes.cortex_m.runner import runner_for

    library_lines = []
    for cpu in args.cpus:
        if args.library:
            library_lines += measure_library(cpu)
        runner_for(build_library(cpu))  # "library cached": built before anything is timed
    models = grid_models(args.images)
    if not args.no_mlperf:
        models.update(mlperf_models())
    if args.only:
        models = {k: v for k, v in models.items() if any(w in k for w in args.only)}
    split = []
    rows, all_equal = [], True
    firsts: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="sweep-board-cost-") as tmp:
        for name, (model, images) in models.items():
            bundle = Path(tmp) / name.replace(" ", "_")
            write_bundle(model, bundle, arena_bytes=arena(model))
            inputs = model_inputs(model, images, args.images)
            for cpu in args.cpus:
                before, t_before, c_before = timed(emulate_per_model, bundle, cpu, inputs)
                after, t_first, c_first = timed(emulate, bundle, cpu, inputs)
                again, t_again, c_again = timed(emulate, bundle, cpu, inputs)
                same = (
                    before.instructions == after.instructions == again.instructions
                    and before.firmware_flash_bytes == after.firmware_flash_bytes
                    and before.firmware_ram_bytes == after.firmware_ram_bytes
                    and before.arena_bytes == after.arena_bytes
                    and np.array_equal(before.outputs, after.outputs)
                )
                all_equal &= same
                if name.endswith("int8") and not name.startswith("MLPerf"):
                    firsts.append((t_first, c_first, t_again, c_again))
                if name == "cnn none int8" and cpu == args.cpus[0]:
                    split = breakdown(bundle, cpu, inputs)
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
            f"{medians[3]:.2f} s CPU"
        )
    print(f"counts, flash, RAM, arena and outputs identical on every model: {all_equal}")
    if split:
        print(f"\nWhere a warm call goes (cnn none int8, {args.cpus[0]}, {args.images} images):\n")
        print("| part | wall s | CPU s |\n| --- | ---: | ---: |\n" + "\n".join(split))
    if library_lines:
        print(
            "\n| cpu | library build | wall s | CPU s | load (1/5/15 min) at start |\n"
            "| --- | --- | ---: | ---: | --- |"
        )
        print("\n".join(library_lines))
    return 0 if all_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())

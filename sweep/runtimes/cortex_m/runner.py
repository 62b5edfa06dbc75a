"""One firmware image per CPU and operator set that runs any model of that set: the host
writes the model in.

Building a model's firmware meant compiling its C array and the harness against
TFLM's headers (seconds per model). The runner (``firmware/runner.cc``) is built
once per CPU and operator set (a library of those operators' kernels, see
:mod:`.library`), registering at run time the builtin operators each model uses
(:mod:`.ops`), and the host places each model's bytes in emulated flash at run
time. Its counted window executes the same instructions as a per-model build
(same kernels, same harness code, checked by :mod:`.window`); the footprint a
per-model build would have is worked out by :mod:`.footprint`.

The cache entry (``<cpu>-runner-<key>``, checked like every entry) also keeps
what footprint links need from this build: the startup object and one
placeholder model object per length modulo 16 (see :mod:`.footprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.bundle import model_data_files
from sweep.runtimes.cortex_m.cache_entry import fetch
from sweep.runtimes.cortex_m.elf import ElfImage, parse
from sweep.runtimes.cortex_m.emulator import FLASH_BASE, FLASH_BYTES
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, compile_source, link
from sweep.runtimes.cortex_m.library import Library, cache_root
from sweep.runtimes.cortex_m.ops import builtin_methods, runner_ops_source
from sweep.runtimes.cortex_m.toolchain import third_party_root
from sweep.runtimes.cortex_m.window import harness_windows

SOURCES = ("runner.cc", "harness.h", "main.cc", "startup.c", "sweep.ld")
PLACEHOLDER_BASE = 1024
"""Placeholder models are ``PLACEHOLDER_BASE + r`` bytes long, r = 0..15."""
RUNNER_VERSION = "1"
_PLACEHOLDERS = tuple(f"placeholder-{r:02d}.o" for r in range(16))


@dataclass(frozen=True)
class Runner:
    """The runner for one CPU and library, checked, with what the host needs to use it.

    ``model_address``: where a model's bytes go (16-byte aligned, past the code);
    ``arena_address``: the first free RAM (16-byte aligned); ``windows``: return
    address of each ``sweep_invoke_begin`` call -> the harness instructions of its
    window (:func:`.window.harness_windows`); ``operators``: builtin operator name
    -> resolver method, from TFLM's header, of the operators it registers (the
    library's).
    """

    cpu: str
    library: Library
    elf: bytes
    image: ElfImage
    model_address: int
    arena_address: int
    windows: dict[int, int]
    operators: dict[str, str]
    startup_object: bytes
    placeholders: tuple[bytes, ...]
    build_seconds: float
    built_now: bool

    def mark(self, name: str) -> int:
        return self.image.symbols[name] & ~1


def _align16(address: int) -> int:
    return (address + 15) // 16 * 16


def placeholder_files(length: int) -> dict[str, str]:
    """A bundle's model files for a model of ``length`` bytes (the bytes do not matter to
    the layout; a bundle's generator writes them, so sections and alignment are a
    bundle's)."""
    return model_data_files(b"\x01" * length, arena_bytes=None)


def _key(lib: Library, ops_source: str) -> str:
    digest = hashlib.sha256()
    for part in (RUNNER_VERSION, lib.key, ops_source):
        digest.update(part.encode() + b"\0")
    for name in SOURCES:
        digest.update((FIRMWARE_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _build(lib: Library, ops_source: str, entry: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="sweep-runner-") as tmp:
        work = Path(tmp)
        (work / "runner_ops.inc").write_text(ops_source)
        includes = (f"-I{work}", f"-I{FIRMWARE_DIR}")
        jobs = [(FIRMWARE_DIR / "runner.cc", work / "runner.o", includes)]
        jobs.append((FIRMWARE_DIR / "startup.c", entry / "startup.o", ()))
        for r in range(16):  # placeholder model objects, written exactly as a bundle's
            folder = work / f"placeholder-{r:02d}"
            folder.mkdir()
            placeholder = placeholder_files(PLACEHOLDER_BASE + r)
            for name in ("model_data.cc", "model_data.h"):
                (folder / name).write_text(placeholder[name])
            jobs.append((folder / "model_data.cc", entry / _PLACEHOLDERS[r], ()))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(compile_source, lib, *job) for job in jobs]:
                future.result()
        elf = link(
            lib,
            [work / "runner.o", entry / "startup.o"],
            lib.archive_copy(work),
            entry / "runner.elf",
        )
        windows = harness_windows(elf)
        if windows is None:
            raise RuntimeError("the runner's counted windows are not straight-line code")
        (entry / "runner.json").write_text(json.dumps({"windows": windows}))


_RUNNERS: dict[str, Runner] = {}


def runner_for(lib: Library) -> Runner:
    """The runner for ``lib``'s CPU and operators: from the cache (checked) or built now
    (seconds). Its resolver has a slot for every builtin, whatever it registers, so its
    ``main()`` frame is the same for every operator set."""
    methods = builtin_methods(third_party_root() / "tflite-micro")
    wanted = methods.keys() if lib.operators is None else lib.operators
    operators = {name: methods[name] for name in wanted}
    ops_source = runner_ops_source(operators, capacity=len(methods))
    final = cache_root() / f"{lib.key}-runner-{_key(lib, ops_source)}"
    if (known := _RUNNERS.get(str(final))) is not None:
        return known
    start = time.perf_counter()
    names = ("runner.elf", "runner.json", "startup.o", *_PLACEHOLDERS)

    def load(files: dict[str, bytes]) -> Runner:
        image = parse(files["runner.elf"])
        windows = json.loads(files["runner.json"])["windows"]
        return Runner(
            cpu=lib.cpu,
            library=lib,
            elf=files["runner.elf"],
            image=image,
            model_address=_align16(image.stored_end(FLASH_BASE, FLASH_BYTES)),
            arena_address=_align16(image.symbols["_end"]),
            windows={int(ret): int(n) for ret, n in windows},
            operators=operators,
            startup_object=files["startup.o"],
            placeholders=tuple(files[name] for name in _PLACEHOLDERS),
            build_seconds=0.0,
            built_now=False,
        )

    runner, built_now = fetch(final, lambda entry: _build(lib, ops_source, entry), names, load)
    if built_now:
        runner = dataclasses.replace(
            runner, built_now=True, build_seconds=time.perf_counter() - start
        )
    _RUNNERS[str(final)] = runner
    return runner

"""Compile and link firmware against the cached library: one bundle's own ELF, and the
compile and link steps the runner and the footprint reuse.

The per-model firmware is the bundle exactly as shipped (``model_data.cc``, its op
resolver and arena size) plus the harness in ``firmware/``, compiled with the
very flags the library was built with (derived from TFLM's Makefile, see
:mod:`.library`), so struct layouts and ABI agree. Only ``main.cc`` depends on
the arena size, so a rebuild with a bigger arena recompiles one file and relinks.
Its flash and RAM are the figures reported for a model; :mod:`.footprint` works
them out without this build.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.cortex_m.library import Library
from sweep.runtimes.cortex_m.toolchain import tool

FIRMWARE_DIR = Path(__file__).parent / "firmware"
_ARENA_RE = re.compile(r"constexpr\s+int\s+kTensorArenaSize\s*=\s*(\d+)\s*;")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")


class BundleError(ValueError):
    """The bundle folder cannot be built into firmware."""


@dataclass(frozen=True)
class Firmware:
    elf: Path
    arena_bytes: int
    flash_bytes: int  # text + rodata + data (the data's initial values live in flash)
    ram_bytes: int  # data + bss, the arena included; not the stack


def bundle_arena_bytes(bundle_dir: Path) -> int:
    """``kTensorArenaSize`` from the bundle's ``model_data.h``."""
    header = Path(bundle_dir) / "model_data.h"
    for name in ("model_data.h", "model_data.cc", "micro_op_resolver.h"):
        if not (Path(bundle_dir) / name).exists():
            raise BundleError(f"{bundle_dir} is not a deploy bundle: {name} is missing")
    match = _ARENA_RE.search(header.read_text())
    if match is None:
        raise BundleError(
            f"{header} defines no kTensorArenaSize: tflite-micro could not run this model, "
            "so there is nothing to build"
        )
    return int(match.group(1))


def run_tool(cmd: list[str], what: str) -> None:
    """Run a toolchain program; a RuntimeError with the end of its output if it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{what} failed:\n{tail}")


def compile_source(lib: Library, source: Path, out: Path, extra: tuple[str, ...] = ()) -> Path:
    """Compile one C/C++ file with the library's own flags (derived, see :mod:`.library`)."""
    is_c = source.suffix == ".c"
    compiler = tool("gcc") if is_c else tool("g++")
    flags = lib.flags.cflags if is_c else lib.flags.cxxflags
    run_tool(
        [compiler, *flags, *extra, "-w", "-c", str(source), "-o", str(out)],
        f"compiling {source.name} for {lib.cpu}",
    )
    return out


def link(lib: Library, objects: list[Path], archive: Path, out: Path) -> Path:
    """Link firmware: the objects in this order, then the library, with the board's script."""
    run_tool(
        [
            tool("g++"),
            *lib.flags.cpu,
            "-mthumb",
            *LINK_FLAGS,
            f"-T{FIRMWARE_DIR / 'sweep.ld'}",
            f"-Wl,-Map={out.with_suffix('.map')}",
            *map(str, objects),
            str(archive),
            "-lm",
            "-o",
            str(out),
        ],
        f"linking the {lib.cpu} firmware",
    )
    return out


def section_sizes(elf: Path) -> tuple[int, int, int]:
    """(text, data, bss) as ``arm-none-eabi-size`` counts them (text includes rodata)."""
    out = subprocess.run(
        [tool("size"), "-B", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return text, data, bss


def symbols(elf: Path) -> dict[str, int]:
    """Global symbol addresses from the ELF's symbol table."""
    out = subprocess.run(
        [tool("nm"), "--defined-only", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[parts[2]] = int(parts[0], 16)
    return table


class FirmwareBuilder:
    """Builds firmware for one bundle, compiling the arena-independent parts once."""

    def __init__(self, lib: Library, bundle_dir: Path, work_dir: Path) -> None:
        self.lib, self.bundle_dir, self.work_dir = lib, Path(bundle_dir), Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.includes = [f"-I{self.bundle_dir.resolve()}"]
        self._objects: list[Path] | None = None

    def _objects_for(self, arena_bytes: int) -> list[Path]:
        """Compile what is missing, in parallel (each compile is one process)."""
        jobs = []
        if self._objects is None:
            jobs += [
                (self.bundle_dir / "model_data.cc", self.work_dir / "model_data.o", ()),
                (FIRMWARE_DIR / "startup.c", self.work_dir / "startup.o", ()),
            ]
        main = self.work_dir / f"main-{arena_bytes}.o"
        jobs.append((FIRMWARE_DIR / "main.cc", main, (f"-DSWEEP_ARENA_BYTES={arena_bytes}",)))
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [
                pool.submit(compile_source, self.lib, src, out, (*self.includes, *defines))
                for src, out, defines in jobs
            ]
            done = [f.result() for f in futures]
        if self._objects is None:
            self._objects = done[:2]
        return [main, *self._objects]

    def build(self, arena_bytes: int) -> Firmware:
        """An ELF whose tensor arena is ``arena_bytes`` (alignas(16))."""
        objects = self._objects_for(arena_bytes)
        elf = self.work_dir / f"firmware-{arena_bytes}.elf"
        link(self.lib, objects, self.lib.archive_copy(self.work_dir), elf)
        text, data, bss = section_sizes(elf)
        return Firmware(
            elf=elf, arena_bytes=arena_bytes, flash_bytes=text + data, ram_bytes=data + bss
        )

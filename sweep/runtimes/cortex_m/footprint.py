"""The flash and RAM a model's own firmware occupies, without building it per model.

``firmware_flash_bytes`` / ``firmware_ram_bytes`` are the text+rodata+data and
data+bss of the per-model ELF (:mod:`.firmware`: ``main.cc`` with the bundle's
resolver and arena, the bundle's model array, the startup code, the library).
Of everything in that link, only two things vary between models that share an
operator set: the model array's length ``L`` and the arena size ``A``. So, per
operator set and *arena class* (the cache entry ``<cpu>-footprint-<key>``):

- ``main.cc`` is compiled once with that resolver and ``SWEEP_ARENA_BYTES`` = the
  first arena of the class met (``A0``);
- it is linked 16 times, with placeholder model arrays of ``1024 + r`` bytes
  (r = 0..15) written by the bundle's own generator (:mod:`.runner` keeps their
  objects), and each link's ``(text, data, bss)`` is kept.

The model array is a 16-byte-aligned input section; nothing placed after it is
aligned to more than 16 bytes (the check link at ``1024 + 16`` bytes confirms
the shift), so an array of ``L`` bytes, ``L = 1024 + r (mod 16)``, lays out
every later section exactly as the placeholder did, shifted by a multiple of 16:
``text(L) = text(1024 + r) + L - (1024 + r)``, data and bss unchanged.

The arena enters ``main.o`` in two places only (compared object by object for two
or more arenas of each class on the Cortex-M4F, M7, M33 and M0+ builds: nothing else
differs): the size of the 16-byte-aligned ``tensor_arena`` in ``.bss``, and the one
instruction that puts ``A`` in a register (``sizeof(tensor_arena)``, stored to the I/O
block and passed to the interpreter).
That instruction's encoding, and so the size of ``main``, depends on which class of
immediate ``A`` is (:func:`arena_class`): 0-255 (``movs``), a Thumb-2 modified
immediate (``mov.w``), 256-65535 otherwise (``movw``); any other arena (and every
arena above 255 on ARMv6-M, which builds constants from literal pools or shifts) is
a class of its own. Within a class, with ``A = A0 (mod 16)`` (part of the class),
every section but ``.bss`` has the same size and ``.bss`` shifts by a multiple of 16:
``bss(A) = bss(A0) + A - A0``. Exact to the byte, for any ``L`` and ``A``, with one
build per operator set and arena class instead of one per arena.

The entry also records how many instructions the per-model ``main`` executes
around the counted Invoke() (:mod:`.window`): the runner's own number may differ
by an instruction, and the difference is what turns the runner's count into the
per-model build's.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.cortex_m.cache_entry import fetch
from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, compile_source, link, section_sizes
from sweep.runtimes.cortex_m.runner import PLACEHOLDER_BASE, Runner, placeholder_files
from sweep.runtimes.cortex_m.window import counted_window, harness_windows

FOOTPRINT_VERSION = "2"


@dataclass(frozen=True)
class Footprint:
    """Flash and RAM of the per-model firmware, and the harness instructions of its counted
    window (``None``: not straight-line code, so no runner count can stand for it)."""

    flash_bytes: int  # text + rodata + data
    ram_bytes: int  # data + bss, the arena included
    window: int | None


def _thumb2_modified_immediate(value: int) -> bool:
    """Whether ``value`` is a Thumb-2 modified immediate (a ``mov.w`` operand): an 8-bit
    value, or a byte repeated as 0x00XY00XY / 0xXY00XY00 / 0xXYXYXYXY, or 1bcdefgh
    rotated right by 8 to 31 bits."""
    value &= 0xFFFF_FFFF
    low = value & 0xFF
    if value < 0x100 or value in (low * 0x0001_0001, low * 0x0101_0101):
        return True
    byte = (value >> 8) & 0xFF
    if value == byte * 0x0100_0100:
        return True
    for rotation in range(8, 32):
        imm8 = ((value << rotation) | (value >> (32 - rotation))) & 0xFFFF_FFFF
        if 0x80 <= imm8 <= 0xFF:
            return True
    return False


def arena_class(arena_bytes: int, cpu: str) -> str:
    """The class of ``arena_bytes`` whose members give ``main.o`` the same code and the same
    section sizes but ``.bss`` (see the module docstring); the arena modulo 16 is part of
    it, so a class's ``.bss`` shifts by multiples of 16."""
    residue = f"mod16={arena_bytes % 16}"
    if 0 <= arena_bytes <= 0xFF:
        return f"imm8 {residue}"
    if cpu_spec(cpu).target_arch not in _ARMV6M:
        if _thumb2_modified_immediate(arena_bytes):
            return f"modified-immediate {residue}"
        if arena_bytes <= 0xFFFF:
            return f"imm16 {residue}"
    return f"exactly {arena_bytes}"


_ARMV6M = ("cortex-m0", "cortex-m0plus", "cortex-m1")


def _key(runner: Runner, resolver: str, arena_bytes: int) -> str:
    digest = hashlib.sha256()
    klass = arena_class(arena_bytes, runner.cpu)
    for part in (FOOTPRINT_VERSION, runner.library.key, resolver, klass):
        digest.update(part.encode() + b"\0")
    for name in ("main.cc", "harness.h", "startup.c", "sweep.ld"):
        digest.update((FIRMWARE_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _build(runner: Runner, resolver: str, arena_bytes: int, entry: Path) -> None:
    lib = runner.library
    with tempfile.TemporaryDirectory(prefix="sweep-footprint-") as tmp:
        work = Path(tmp)
        headers = work / "bundle"
        headers.mkdir()
        (headers / "micro_op_resolver.h").write_text(resolver)
        (headers / "model_data.h").write_text(placeholder_files(PLACEHOLDER_BASE)["model_data.h"])
        main = compile_source(
            lib,
            FIRMWARE_DIR / "main.cc",
            work / "main.o",
            (f"-I{headers}", f"-DSWEEP_ARENA_BYTES={arena_bytes}"),
        )
        startup = work / "startup.o"
        startup.write_bytes(runner.startup_object)
        archive = lib.archive_copy(work)
        models = []
        for r, data in enumerate(runner.placeholders):
            models.append(work / f"model-{r:02d}.o")
            models[-1].write_bytes(data)
        check = work / "check"
        check.mkdir()
        for name, text in placeholder_files(PLACEHOLDER_BASE + 16).items():
            (check / name).write_text(text)
        models.append(compile_source(lib, check / "model_data.cc", work / "model-check.o"))

        def sizes(model: Path) -> tuple[int, int, int]:
            elf = link(lib, [main, model, startup], archive, model.with_suffix(".elf"))
            return section_sizes(elf)

        with ThreadPoolExecutor(max_workers=2) as pool:
            found = list(pool.map(sizes, models))
        base, check_sizes = found[0], found[16]
        if check_sizes != (base[0] + 16, base[1], base[2]):
            raise RuntimeError(
                f"a model array 16 bytes longer did not shift the layout by 16 bytes "
                f"({base} -> {check_sizes}): the footprint arithmetic does not hold here"
            )
        window = counted_window(harness_windows(main))
        figures = {"arena": arena_bytes, "sizes": [list(s) for s in found[:16]], "window": window}
        (entry / "figures.json").write_text(json.dumps(figures))


def footprint(runner: Runner, resolver: str, arena_bytes: int, model_bytes: int) -> Footprint:
    """The per-model firmware's flash and RAM for a model of ``model_bytes`` bytes whose
    bundle resolver is ``resolver`` and arena ``arena_bytes`` (see the module docstring).

    A new operator set or arena class costs one compile and 17 links (seconds, cached);
    then every model with them costs nothing.
    """
    final = runner.library.root.parent / (
        f"{runner.library.key}-footprint-{_key(runner, resolver, arena_bytes)}"
    )

    def load(files: dict[str, bytes]) -> tuple[list[list[int]], int | None, int]:
        figures = json.loads(files["figures.json"])
        window = figures["window"]
        sizes = [[int(v) for v in triple] for triple in figures["sizes"]]
        if len(sizes) != 16 or any(len(triple) != 3 for triple in sizes):
            raise ValueError("figures.json does not hold 16 (text, data, bss) triples")
        built_for = int(figures["arena"])
        if arena_class(built_for, runner.cpu) != arena_class(arena_bytes, runner.cpu):
            raise ValueError(f"figures.json was built for arena {built_for}, of another class")
        return sizes, None if window is None else int(window), built_for

    def build(entry: Path) -> None:
        _build(runner, resolver, arena_bytes, entry)

    (sizes, window, built_for), _ = fetch(final, build, ("figures.json",), load)
    r = model_bytes % 16
    text, data, bss = sizes[r]
    text += model_bytes - (PLACEHOLDER_BASE + r)
    bss += arena_bytes - built_for
    return Footprint(flash_bytes=text + data, ram_bytes=data + bss, window=window)

"""The flash and RAM a model's own firmware occupies, without building it per model.

``firmware_flash_bytes`` / ``firmware_ram_bytes`` are the text+rodata+data and
data+bss of the per-model ELF (:mod:`.firmware`: ``main.cc`` with the bundle's
resolver and arena, the bundle's model array, the startup code, the library).
Of everything in that link, only two things vary between models that share an
operator set and an arena size: the model array's length ``L``, and nothing
else. So, per operator set and arena (the cache entry ``<cpu>-footprint-<key>``):

- ``main.cc`` is compiled once with that resolver and ``SWEEP_ARENA_BYTES``
  (the arena size is baked into its code and its ``.bss``, so it is part of the
  key rather than worked out);
- it is linked 16 times, with placeholder model arrays of ``1024 + r`` bytes
  (r = 0..15) written by the bundle's own generator (:mod:`.runner` keeps their
  objects), and each link's ``(text, data, bss)`` is kept.

The model array is a 16-byte-aligned input section; nothing placed after it is
aligned to more than 16 bytes (the check link at ``1024 + 16`` bytes confirms
the shift), so an array of ``L`` bytes, ``L = 1024 + r (mod 16)``, lays out
every later section exactly as the placeholder did, shifted by a multiple of 16:
``text(L) = text(1024 + r) + L - (1024 + r)``, data and bss unchanged. Exact to
the byte, for any ``L``, with no build per model.

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
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, compile_source, link, section_sizes
from sweep.runtimes.cortex_m.runner import PLACEHOLDER_BASE, Runner, placeholder_files
from sweep.runtimes.cortex_m.window import counted_window, harness_windows

FOOTPRINT_VERSION = "1"


@dataclass(frozen=True)
class Footprint:
    """Flash and RAM of the per-model firmware, and the harness instructions of its counted
    window (``None``: not straight-line code, so no runner count can stand for it)."""

    flash_bytes: int  # text + rodata + data
    ram_bytes: int  # data + bss, the arena included
    window: int | None


def _key(runner: Runner, resolver: str, arena_bytes: int) -> str:
    digest = hashlib.sha256()
    for part in (FOOTPRINT_VERSION, runner.library.key, resolver, str(arena_bytes)):
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
        figures = {"sizes": [list(s) for s in found[:16]], "window": window}
        (entry / "figures.json").write_text(json.dumps(figures))


def footprint(runner: Runner, resolver: str, arena_bytes: int, model_bytes: int) -> Footprint:
    """The per-model firmware's flash and RAM for a model of ``model_bytes`` bytes whose
    bundle resolver is ``resolver`` and arena ``arena_bytes`` (see the module docstring).

    A new operator set or arena costs one compile and 17 links (seconds, cached);
    then every model with them costs nothing.
    """
    final = runner.library.root.parent / (
        f"{runner.library.key}-footprint-{_key(runner, resolver, arena_bytes)}"
    )

    def load(files: dict[str, bytes]) -> tuple[list[list[int]], int | None]:
        figures = json.loads(files["figures.json"])
        window = figures["window"]
        sizes = [[int(v) for v in triple] for triple in figures["sizes"]]
        if len(sizes) != 16 or any(len(triple) != 3 for triple in sizes):
            raise ValueError("figures.json does not hold 16 (text, data, bss) triples")
        return sizes, None if window is None else int(window)

    def build(entry: Path) -> None:
        _build(runner, resolver, arena_bytes, entry)

    (sizes, window), _ = fetch(final, build, ("figures.json",), load)
    r = model_bytes % 16
    text, data, bss = sizes[r]
    text += model_bytes - (PLACEHOLDER_BASE + r)
    return Footprint(flash_bytes=text + data, ram_bytes=data + bss, window=window)

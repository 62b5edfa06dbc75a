"""What the harness itself executes inside a counted window, read from its machine code.

A count runs from the entry of ``sweep_invoke_begin`` to the entry of
``sweep_invoke_end``: Invoke() plus the few instructions of the caller around it
(the call to Invoke, maybe a move that GCC folds in from the code that follows).
The runner and a per-model build share the harness source (``harness.h``), but
each ``main()`` is compiled on its own and GCC allocates registers around the
calls as the rest of ``main`` suggests: the runner's counted window has measured
one instruction fewer than a per-model ``main``'s. So this is read from the
machine code, not assumed: for every call of ``sweep_invoke_begin`` in ``main``,
in address order, its return address and the number of caller instructions up
to and including the next call of ``sweep_invoke_end``. Anything but
straight-line code there is reported as unknown (``None``), never guessed.

Which call is the counted invoke: the runner reports it at run time (the return
address in LR when its counted window opens); for a per-model ``main``,
:func:`counted_window` applies the harness's structure (two rounds, warm-up then
counted, then the images' loop): three calls when GCC unrolls the two rounds,
the second is counted; two calls when it does not, the first.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sweep.runtimes.cortex_m.toolchain import tool

_INSN = re.compile(r"^\s*([0-9a-f]+):\t(\S+)\s*(.*)$")
_RELOC = re.compile(r"^\s*([0-9a-f]+):\s+R_ARM_\w+\s+(\S+)")
_TARGET = re.compile(r"<([^>+]+)>")
BEGIN, END = "sweep_invoke_begin", "sweep_invoke_end"
_BRANCHES = ("b", "bx", "blx", "cbz", "cbnz", "tbb", "tbh", "pop", "ldm", "it")


def _main_listing(path: Path) -> list[tuple[str, str, int]]:
    """(mnemonic, call target or '', address) for each instruction of ``main``."""
    out = subprocess.run(
        [tool("objdump"), "-dr", "--no-show-raw-insn", "--disassemble=main", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listing: list[list] = []
    for line in out.splitlines():
        reloc = _RELOC.match(line)
        if reloc and listing:
            listing[-1][1] = reloc.group(2)  # the call target of an unlinked object
            continue
        insn = _INSN.match(line)
        if insn:
            target = _TARGET.search(insn.group(3))
            address = int(insn.group(1), 16)
            listing.append([insn.group(2), target.group(1) if target else "", address])
    return [(m, t, a) for m, t, a in listing]


def harness_windows(path: Path) -> list[tuple[int, int]] | None:
    """(return address of the ``sweep_invoke_begin`` call, caller instructions of its
    window) for each call in ``main`` (see the module docstring)."""
    listing = _main_listing(path)
    windows = []
    for i, (mnemonic, target, _) in enumerate(listing):
        if not (mnemonic.startswith("bl") and target == BEGIN):
            continue
        for j in range(i + 1, len(listing)):
            name, callee, _ = listing[j]
            if name.startswith("bl") and callee == END:
                windows.append((listing[i + 1][2], j - i))
                break
            if name.split(".")[0] in _BRANCHES or name.startswith("b."):
                return None
        else:
            return None
    return windows or None


def counted_window(windows: list[tuple[int, int]] | None) -> int | None:
    """The counted invoke's window in a per-model ``main`` (see the module docstring)."""
    if windows is None:
        return None
    by_calls = {3: 1, 2: 0}
    index = by_calls.get(len(windows))
    return None if index is None else windows[index][1]

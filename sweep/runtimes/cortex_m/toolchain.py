"""Find the GNU Arm toolchain and the TFLM sources, or say in one line how to get them.

Both are outside the Python environment (a Debian package and an offline
source snapshot), so the first thing a user without them sees must be the
command that fixes it, not a compiler's "No such file or directory".
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from sweep.stores.paths import PROJECT_ROOT

DEBIAN_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib")
TOOLS = ("gcc", "g++", "ar", "size", "nm", "objdump")
"""The ``arm-none-eabi-*`` programs this package runs (TFLM's Makefile needs more)."""


class ToolchainMissing(RuntimeError):
    """The GNU Arm embedded toolchain is not installed (or not on PATH)."""


class ThirdPartyMissing(RuntimeError):
    """The TFLM / CMSIS-NN sources are not where ``SWEEP_THIRD_PARTY`` says."""


def toolchain_bin() -> Path:
    """The folder holding ``arm-none-eabi-gcc`` and friends, found on PATH."""
    found = {tool: shutil.which(f"arm-none-eabi-{tool}") for tool in TOOLS}
    missing = [f"arm-none-eabi-{tool}" for tool, path in found.items() if path is None]
    if missing:
        raise ToolchainMissing(
            f"{', '.join(missing)} not found on PATH: install the GNU Arm toolchain with "
            f"`apt-get install {' '.join(DEBIAN_PACKAGES)}`"
        )
    return Path(found["gcc"]).parent  # type: ignore[arg-type]


def tool(name: str) -> str:
    """Absolute path of ``arm-none-eabi-<name>``."""
    return str(toolchain_bin() / f"arm-none-eabi-{name}")


@functools.cache
def toolchain_version() -> str:
    """First line of ``arm-none-eabi-gcc --version`` (part of the library cache key; asked
    once per process)."""
    out = subprocess.run(
        [tool("gcc"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()[0].strip()


def check_newlib() -> None:
    """Fail early and clearly if the C/C++ libraries for the toolchain are missing (checked
    once per process and toolchain).

    ``gcc-arm-none-eabi`` alone installs a compiler that cannot link anything:
    newlib and libstdc++ come in the other two packages.
    """
    _check_newlib(tool("gcc"))


@functools.cache
def _check_newlib(gcc: str) -> None:
    for lib in ("libc_nano.a", "libstdc++_nano.a"):
        out = subprocess.run(
            [gcc, "-mthumb", "-mcpu=cortex-m4", f"-print-file-name={lib}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not out or not Path(out).is_absolute() or not Path(out).exists():
            raise ToolchainMissing(
                f"{lib} for arm-none-eabi not found: install the GNU Arm toolchain's libraries "
                f"with `apt-get install {' '.join(DEBIAN_PACKAGES)}`"
            )


def third_party_root() -> Path:
    """``$SWEEP_THIRD_PARTY`` or ``<project root>/../shared/third_party``, checked."""
    configured = os.environ.get("SWEEP_THIRD_PARTY")
    root = (
        Path(configured).expanduser().resolve()
        if configured
        else (PROJECT_ROOT.parent / "shared" / "third_party").resolve()
    )
    needed = [
        root / "tflite-micro" / "tensorflow" / "lite" / "micro" / "tools" / "make" / "Makefile",
        root / "downloads" / "cmsis_nn",
        root / "downloads" / "flatbuffers",
    ]
    absent = [str(p) for p in needed if not p.exists()]
    if absent:
        raise ThirdPartyMissing(
            f"TFLM/CMSIS-NN sources not found under {root} (missing {absent[0]}): set "
            "SWEEP_THIRD_PARTY to the folder holding tflite-micro/ and downloads/ "
            "(see third_party/README.md)"
        )
    return root

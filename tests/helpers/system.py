"""What a test needs from outside the Python environment, and the one way to ask for it.

pip installs everything the package imports; a few tests need more: the GNU Arm toolchain
(Debian packages), the TFLM + CMSIS-NN sources of ``../shared/third_party`` (an offline
snapshot, no package), the MLPerf Tiny reference models of ``../shared/mlperf_tiny``,
``make``, ``ss`` (iproute2), a host C/C++ compiler. A test names what it needs with a marker::

    from helpers.system import needs_cortex_m

    @needs_cortex_m                       # the Arm toolchain and the TFLM sources
    def test_my_board_figure(): ...

    @pytest.mark.needs("mlperf_tiny")     # any of NEEDS, several at once if need be
    def test_on_the_reference_model(): ...

(a fixture that needs them is marked on the tests that use it). On a machine without
them the test is skipped with one line naming what is missing and the command that
installs it. ``.ci/run`` installs the packages and sets ``SWEEP_REQUIRE_SYSTEM_PACKAGES=1``:
then a missing need fails the test instead, so CI can never hide a Cortex-M test.

What is missing is found by the product's own checks (``sweep.runtimes.cortex_m``), so a
test is skipped exactly when a sweep would say the toolchain is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.config import ROOT
from sweep.runtimes.cortex_m.toolchain import DEBIAN_PACKAGES

REQUIRE = "SWEEP_REQUIRE_SYSTEM_PACKAGES"
"""Set to 1 (``.ci/run`` does): a missing need fails the test instead of skipping it."""

MARKER = "needs"


@dataclass(frozen=True)
class Need:
    """Something outside pip's reach: how to tell it is missing and how to get it."""

    name: str
    missing: Callable[[], str | None]  # why it is missing, None when it is there
    packages: tuple[str, ...] = ()  # the Debian packages that provide it (.ci/run installs them)
    otherwise: str = ""  # how to provide it when no package does

    @property
    def remedy(self) -> str:
        return f"apt-get install {' '.join(self.packages)}" if self.packages else self.otherwise


def _arm_toolchain() -> str | None:
    from sweep.runtimes.cortex_m.toolchain import ToolchainMissing, check_newlib, toolchain_bin

    try:
        toolchain_bin()
        check_newlib()
    except ToolchainMissing as missing:
        return str(missing).split(":", 1)[0]
    return None


def _tflm_sources() -> str | None:
    from sweep.runtimes.cortex_m.toolchain import ThirdPartyMissing, third_party_root

    try:
        third_party_root()
    except ThirdPartyMissing as missing:
        return str(missing).split(":", 1)[0]
    return None


MLPERF_TINY = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))


def _mlperf_tiny() -> str | None:
    from sweep.runtimes.cortex_m.published import MODEL_FILES

    absent = [name for name in MODEL_FILES.values() if not (MLPERF_TINY / name).exists()]
    return f"{absent[0]} not found in {MLPERF_TINY}" if absent else None


def _programs(*names: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        absent = [name for name in names if shutil.which(name) is None]
        return f"{', '.join(absent)} not found on PATH" if absent else None

    return missing


NEEDS: dict[str, Need] = {
    need.name: need
    for need in (
        Need("arm_toolchain", _arm_toolchain, DEBIAN_PACKAGES),  # the product's own list
        Need("make", _programs("make"), ("make",)),  # TFLM's Makefile builds the library
        Need(
            "tflm_sources",
            _tflm_sources,
            otherwise="put the TFLM + CMSIS-NN snapshot in ../shared/third_party or set "
            "SWEEP_THIRD_PARTY",
        ),
        Need(
            "mlperf_tiny",
            _mlperf_tiny,
            otherwise="put the MLPerf Tiny reference models in ../shared/mlperf_tiny or set "
            "SWEEP_MLPERF_TINY",
        ),
        Need("iproute2", _programs("ss"), ("iproute2",)),
        Need("host_compilers", _programs("gcc", "g++"), ("gcc", "g++")),
    )
}


PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(p for n in NEEDS.values() for p in n.packages))
"""Every Debian package a test may need: what ``.ci/run`` installs."""


@functools.cache
def why_missing(name: str) -> str | None:
    """One line saying what is missing and how to get it; None when ``name`` is there."""
    need = NEEDS[name]
    missing = need.missing()
    return None if missing is None else f"needs {name} ({missing}): {need.remedy}"


def required() -> bool:
    return os.environ.get(REQUIRE, "") not in ("", "0")


needs_cortex_m = pytest.mark.needs("arm_toolchain", "make", "tflm_sources")
"""Builds TFLM + CMSIS-NN and firmware: the Arm toolchain, make and the TFLM sources."""


def missing_for(item: pytest.Item) -> list[str]:
    """Why ``item`` cannot run here (empty when everything it needs is there)."""
    names = [name for mark in item.iter_markers(MARKER) for name in mark.args]
    unknown = sorted(set(names) - set(NEEDS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: unknown need(s) {unknown}; known: {list(NEEDS)}")
    return [why for name in dict.fromkeys(names) if (why := why_missing(name))]

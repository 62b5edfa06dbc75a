"""The ``needs`` marker itself (tests/helpers/system.py): a test whose system packages are
missing is skipped with one line saying what to install, or fails when CI requires them;
and CI installs every package a test may need.

The marker is exercised in a pytest run of its own (pytester) on a machine whose Arm
toolchain is hidden from PATH, with this suite's own conftest and helpers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers.config import ROOT
from helpers.system import PACKAGES, REQUIRE

pytest_plugins = ["pytester"]

INNER_TEST = """
import pytest
from helpers.system import needs_cortex_m


@needs_cortex_m
def test_builds_firmware():
    pass


@pytest.mark.needs("arm_toolchain")
def test_compiles():
    pass


def test_needs_nothing():
    pass
"""


def _without_arm_toolchain(tmp_path: Path) -> str:
    """A PATH holding every program of the current one except ``arm-none-eabi-*``."""
    hidden = tmp_path / "bin"
    hidden.mkdir()
    for folder in map(Path, dict.fromkeys(os.environ["PATH"].split(":"))):
        if not folder.is_dir():
            continue
        for program in folder.iterdir():
            target = hidden / program.name
            if not program.name.startswith("arm-none-eabi-") and not target.exists():
                target.symlink_to(program)
    return str(hidden)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A pytest project with this suite's conftest, its helpers and one marked test file,
    to be run on a PATH without the Arm toolchain."""
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    needs(*names): see tests/helpers/system.py\n")
    pytester.makepyfile(test_marked=INNER_TEST)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    monkeypatch.setenv("PATH", _without_arm_toolchain(tmp_path))
    monkeypatch.delenv(REQUIRE, raising=False)  # CI sets it; the test that wants it sets it
    return pytester


def test_missing_packages_skip_with_one_line_naming_them(inner: pytest.Pytester) -> None:
    result = inner.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    skips = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(skips) == 2, result.outlines
    install = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi " + (
        "libstdc++-arm-none-eabi-newlib"
    )
    for line in skips:
        assert re.search(r"needs arm_toolchain \(arm-none-eabi-gcc.* not found on PATH\)", line)
        assert line.endswith(install), line


def test_ci_turns_the_skips_into_failures(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUIRE, "1")
    result = inner.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=2)
    reasons = [line for line in result.outlines if line.startswith("needs arm_toolchain (")]
    assert len(reasons) == 2, result.outlines
    assert all(line.endswith(f"-newlib ({REQUIRE}=1)") for line in reasons), reasons


def test_ci_installs_every_package_a_test_needs_and_requires_them() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    listed = re.search(r'^SYSTEM_PACKAGES="([^"]+)"', script, re.M)
    assert listed is not None
    assert set(listed.group(1).split()) == set(PACKAGES)
    assert f"export {REQUIRE}=1" in script


SKIPS_OF_ITS_OWN = re.compile(r"pytest\.skip\(|mark\.skipif\(|importorskip\(|shutil\.which\(")
"""What a test would write to skip itself past the marker (and past CI's refusal)."""


def test_no_test_skips_on_its_own() -> None:
    """The needs marker is the one way a test is skipped: a test that looked for a program
    itself and skipped would be skipped in CI too, hiding what SWEEP_REQUIRE_SYSTEM_PACKAGES
    is there to show."""
    tests = ROOT / "tests"
    exempt = {tests / "helpers" / "system.py", Path(__file__)}  # the marker and this test
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(tests.rglob("*.py"))
        if path not in exempt
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SKIPS_OF_ITS_OWN.search(line)
    ]
    assert found == [], "skip through @pytest.mark.needs(...) instead:\n" + "\n".join(found)

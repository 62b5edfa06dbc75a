"""Build TFLM + CMSIS-NN once per CPU and keep it.

The library takes minutes to build and never changes for a given source tree,
CPU and compiler, while every model of a sweep needs it; so it is built once
into ``$SWEEP_OUTPUTS/cache/firmware/<cpu>-<key>/`` (or ``$SWEEP_FIRMWARE_CACHE/...``)
and reused, ``key`` hashing
everything that changes the result (the sources' bytes, the make flags, the
compiler's version and this recipe). The build happens in a temporary folder
renamed into place, under an exclusive file lock, so parallel jobs of a sweep
build it once and nobody ever sees half a library.

The cached folder holds the build tree itself (a writable copy of TFLM with its
``downloads/``), because TFLM's headers and the exact compile flags the library
was built with are both needed to compile a model's firmware against it:
``build.json`` records those flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.toolchain import (
    check_newlib,
    third_party_root,
    toolchain_bin,
    toolchain_version,
)
from sweep.stores.paths import outputs_root

log = logging.getLogger(__name__)

RECIPE_VERSION = "1"
"""Bump when the way the library is built changes, so old caches are not reused."""

MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
BUILD_MINUTES = {"cmsis_nn": 4, None: 3}
_PRINT_FLAGS_MK = """
sweep_print_flags:
\t@echo 'SWEEP_CXXFLAGS=$(CXXFLAGS) $(CORE_OPTIMIZATION_LEVEL)'
\t@echo 'SWEEP_CCFLAGS=$(CCFLAGS) $(CORE_OPTIMIZATION_LEVEL)'
\t@echo 'SWEEP_INCLUDES=$(INCLUDES)'
\t@echo 'SWEEP_LIB=$(MICROLITE_LIB_PATH)'
"""


@dataclass(frozen=True)
class Library:
    """A built ``libtensorflow-microlite.a`` and how to compile code against it."""

    cpu: str
    root: Path  # the cached folder
    archive: Path
    cxxflags: list[str]
    cflags: list[str]
    build_seconds: float  # time the one-off build took (when it happened)
    built_now: bool  # True if this call built it, False if it came from the cache


def _tree_digest(root: Path) -> str:
    """Hash of every file's path and bytes under ``root`` (~20 MB: a fraction of a second)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


_DIGESTS: dict[Path, str] = {}


def cache_key(cpu: str, optimized_kernels: str | None) -> str:
    third_party = third_party_root()
    if third_party not in _DIGESTS:
        _DIGESTS[third_party] = _tree_digest(third_party)
    parts = [
        RECIPE_VERSION,
        _DIGESTS[third_party],
        " ".join(cpu_spec(cpu).make_args(optimized_kernels)),
        toolchain_version(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _copy_writable(src: Path, dst: Path) -> None:
    """Copy a read-only source tree so that make may write into it."""
    shutil.copytree(src, dst, symlinks=True)
    for path in [dst, *dst.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _prepare_tree(build: Path) -> Path:
    """A writable TFLM with its downloads/ and gcc_embedded/bin/ already in place."""
    third_party = third_party_root()
    tflm = build / "tflm"
    _copy_writable(third_party / "tflite-micro", tflm)
    downloads = tflm / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    for folder in sorted((third_party / "downloads").iterdir()):
        _copy_writable(folder, downloads / folder.name)
    # TFLM's Makefile would download a GCC unless this folder exists: use Debian's.
    gcc_bin = downloads / "gcc_embedded" / "bin"
    gcc_bin.mkdir(parents=True)
    for program in sorted(toolchain_bin().glob("arm-none-eabi-*")):
        (gcc_bin / program.name).symlink_to(program)
    return tflm


def _make_env() -> dict[str, str]:
    # TFLM's Makefile runs python3 at parse time and needs numpy and Pillow: the venv's.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _make(tflm: Path, args: list[str], extra_makefile: Path | None = None) -> str:
    cmd = ["make", "-s", "-f", MAKEFILE]
    if extra_makefile is not None:
        cmd += ["-f", str(extra_makefile)]
    done = subprocess.run(
        cmd + args, cwd=tflm, env=_make_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"TFLM build failed ({' '.join(cmd + args)}):\n{tail}")
    return done.stdout


def _compile_flags(tflm: Path, make_args: list[str]) -> dict[str, object]:
    """The exact flags and include folders the library was compiled with."""
    extra = tflm.parent / "print_flags.mk"
    extra.write_text(_PRINT_FLAGS_MK)
    out = _make(tflm, [*make_args, "sweep_print_flags"], extra)
    values = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("SWEEP_"))

    def flags(text: str) -> list[str]:  # split as the shell running make's recipes would
        return [f for f in shlex.split(text) if f not in ("-MD", "-Werror")]

    includes = [f[2:] for f in shlex.split(values["SWEEP_INCLUDES"]) if f.startswith("-I")]
    return {
        "cxxflags": flags(values["SWEEP_CXXFLAGS"]),
        "cflags": flags(values["SWEEP_CCFLAGS"]),
        "includes": list(dict.fromkeys(includes)),  # relative to tflm/
        "archive": values["SWEEP_LIB"].strip(),
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(cpu: str, root: Path, built_now: bool) -> Library:
    info = json.loads((root / "build.json").read_text())
    tflm = root / "tflm"
    includes = [f"-I{(tflm / inc).resolve()}" for inc in info["includes"]]
    return Library(
        cpu=cpu,
        root=root,
        archive=tflm / info["archive"],
        cxxflags=[*info["cxxflags"], *includes],
        cflags=[*info["cflags"], *includes],
        build_seconds=float(info["build_seconds"]),
        built_now=built_now,
    )


def cache_root() -> Path:
    """``$SWEEP_FIRMWARE_CACHE`` or ``<outputs>/cache/firmware``.

    The override exists for tests that move ``SWEEP_OUTPUTS`` into a temporary
    folder per test: they can still share one library build.
    """
    configured = os.environ.get("SWEEP_FIRMWARE_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return outputs_root() / "cache" / "firmware"


def cache_dir(cpu: str, optimized_kernels: str | None = "cmsis_nn") -> Path:
    """Where the library for ``cpu`` lives (or will): see the module docstring."""
    kernels = "" if optimized_kernels == "cmsis_nn" else f"-{optimized_kernels or 'reference'}"
    return cache_root() / f"{cpu}{kernels}-{cache_key(cpu, optimized_kernels)}"


def build_library(cpu: str, optimized_kernels: str | None = "cmsis_nn") -> Library:
    """The TFLM library for ``cpu``: from the cache, or built once (a few minutes).

    ``optimized_kernels=None`` builds TFLM's reference kernels instead of
    CMSIS-NN (to measure what CMSIS-NN gains).
    """
    spec = cpu_spec(cpu)
    toolchain_bin()
    check_newlib()
    final = cache_dir(cpu, optimized_kernels)
    if (final / "build.json").exists():
        return _load(cpu, final, built_now=False)
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "build.json").exists():  # another process built it while we waited
            return _load(cpu, final, built_now=False)
        kernels = "CMSIS-NN" if optimized_kernels == "cmsis_nn" else "reference kernels"
        log.info(
            "building TFLM + %s for %s once (about %d min); later runs reuse it from %s",
            kernels,
            cpu,
            BUILD_MINUTES.get(optimized_kernels, 4),
            final,
        )
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            tflm = _prepare_tree(tmp)
            make_args = spec.make_args(optimized_kernels)
            jobs = f"-j{max(1, os.cpu_count() or 1)}"
            _make(tflm, [*make_args, jobs, "microlite"])
            info = _compile_flags(tflm, make_args)
            if not (tflm / str(info["archive"])).exists():
                raise RuntimeError(f"TFLM build produced no {info['archive']}")
            # Objects are only needed to rebuild; the archive and headers stay.
            for obj in (tflm / "gen").glob("*/obj"):
                shutil.rmtree(obj)
            info["build_seconds"] = round(time.perf_counter() - start, 1)
            info["make_args"] = make_args
            (tmp / "build.json").write_text(json.dumps(info, indent=2))
            if final.exists():  # a folder left without build.json: never finished
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = time.perf_counter() - start
        log.info("built TFLM + %s for %s in %.0f s: %s", kernels, cpu, seconds, final)
        return _load(cpu, final, built_now=True)

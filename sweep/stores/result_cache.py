"""Results cached by content: a sweep pays only for what is new.

Converting a model and measuring it (accuracy over the test set, the target's
checks: tflite-micro's arena search, the emulated Cortex-M build) costs seconds per
sequence, and a re-run grid, or one that adds a quantizer to a finished grid, would
pay them all again. An entry here is kept under a key of everything that determines
those results (:func:`sweep.pipeline.measurement.result_key`: the pre-trained
weights, the data, the quantizer's and target's settings, the import closure of the
code that converts and measures, what each check declares). It holds the
``.tflite``, the predictions, the files the checks wrote (the deploy bundle) and the
deterministic metrics; the desktop latency is the one noisy figure and is timed
again (see ``measure.reuse_latency``).

Entries follow the stage cache's rules: written to a temporary folder and renamed
into place, checksummed, and a damaged entry is rebuilt, never trusted. Nothing
in an entry is executed or unpickled. The cache may be shared (between sweeps, and
between machines in the Ray set-up), so whoever can write it can plant an entry: an
entry is used only when every file in it is a regular file (no link is followed,
:mod:`sweep.stores.untrusted`) whose checksum meta.json holds, and every metric a
finite number. The one file written after the entry, a latency kept for reuse
(``measure.reuse_latency``), is read as latency figures only: the names the caller
expects, each a finite number above zero, so it cannot set any other metric.
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sweep import strict_json
from sweep.stores.fingerprints import digest, package_versions
from sweep.stores.memos import per_sweep
from sweep.stores.untrusted import entry_files, read_file, remove

log = logging.getLogger(__name__)

_VERSIONED = ("tensorflow", "ai-edge-litert", "sweep")
"""Packages that convert and score every model (each check names the runtimes it uses)."""
FILES = ("model.tflite", "predictions.npy")
META, LATENCY_PREFIX = "meta.json", "latency-"
_LATENCY_FILE_BYTES = 64 * 1024


@per_sweep
def runtime_versions() -> dict[str, str]:
    return package_versions(_VERSIONED)


@per_sweep
def host_fingerprint() -> str:
    """What a latency figure depends on besides the model: this machine and its runtime."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    material = {"node": platform.node(), "cpu": cpu, "litert": runtime_versions()}
    return digest(material)[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checksummed(name: str) -> bool:
    """Whether a file of an entry is covered by meta.json (not meta itself, nor a
    latency timed later)."""
    return name != META and not name.startswith(LATENCY_PREFIX)


def _finite(values: dict, what: str) -> dict[str, float]:
    """``values`` as floats, every one of them finite (ValueError otherwise)."""
    numbers = {str(k): float(v) for k, v in values.items()}
    bad = sorted(k for k, v in numbers.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"{what} not finite: {', '.join(bad)}")
    return numbers


class ResultCache:
    """Read or write the results of one key under ``root``; ``enabled=False`` never reads."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled

    def load(self, key: str, out_dir: Path) -> tuple[dict[str, float], dict[str, str]] | None:
        """Copy a valid entry's files into ``out_dir``; its metrics and tags, or None."""
        entry = self.root / key
        if not self.enabled or not (entry / META).exists():
            return None
        try:
            meta = strict_json.loads(read_file(entry / META))
            names = [n for n in entry_files(entry) if _checksummed(n)]
            contents = {name: read_file(entry / name) for name in names}
            found = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
            if found != meta["sha256"]:
                raise ValueError("files or checksums differ from meta.json")
            metrics = _finite(meta["metrics"], "metrics")
            tags = {str(k): str(v) for k, v in meta["tags"].items()}
        except Exception as error:  # any damage: rebuild, never trust it
            log.warning("results entry %s is damaged (%s): measuring again", entry, error)
            remove(entry)
            return None
        for name, data in contents.items():  # the bytes checked, not the files again
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return metrics, tags

    def store(
        self,
        key: str,
        out_dir: Path,
        metrics: dict[str, float],
        tags: dict[str, str],
        files: list[Path] = (),
    ) -> None:
        """Keep the result files of ``out_dir`` (the model, its predictions and ``files``
        the checks wrote there) and the given metrics under ``key``. Results with a
        non-finite metric are not kept: a later load would refuse them."""
        try:
            _finite(metrics, "metrics")
        except ValueError as why:
            log.warning("results not cached: %s", why)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        for name in [*FILES, *(str(Path(f).relative_to(out_dir)) for f in files)]:
            source = out_dir / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            elif source.is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
        sums = {n: _sha256(staging / n) for n in entry_files(staging) if _checksummed(n)}
        meta = {"sha256": sums, "metrics": metrics, "tags": tags}
        (staging / META).write_text(strict_json.dumps(meta, indent=1, sort_keys=True))
        entry = self.root / key
        remove(entry)
        try:
            staging.rename(entry)
        except OSError:  # a parallel job stored the same result first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)

    def latency(self, key: str, names: Iterable[str]) -> dict[str, float] | None:
        """A latency timed earlier for this model on this host, if one was kept and holds
        exactly the figures ``names``, each a finite number above zero."""
        path = self.root / key / f"{LATENCY_PREFIX}{host_fingerprint()}.json"
        if not path.exists() and not path.is_symlink():
            return None
        try:
            kept = strict_json.loads(read_file(path, _LATENCY_FILE_BYTES))
            if not isinstance(kept, dict) or set(kept) != set(names):
                raise ValueError(f"it is not exactly the figures {sorted(names)}")
            figures = _finite(kept, "figures")
            if min(figures.values()) <= 0:
                raise ValueError("a figure is not above zero")
        except (OSError, ValueError, TypeError) as error:
            log.warning("kept latency %s is not usable (%s): timing again", path, error)
            remove(path)
            return None
        return figures

    def keep_latency(self, key: str, figures: dict[str, float]) -> None:
        entry = self.root / key
        if entry.is_dir() and not entry.is_symlink():
            path = entry / f"{LATENCY_PREFIX}{host_fingerprint()}.json"
            remove(path)  # a planted link there: replaced, its target untouched
            path.write_text(strict_json.dumps(figures, sort_keys=True))

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
in an entry is executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import tempfile
from pathlib import Path

from sweep.stores.fingerprints import digest, package_versions
from sweep.stores.memos import per_sweep

log = logging.getLogger(__name__)

_VERSIONED = ("tensorflow", "ai-edge-litert", "sweep")
"""Packages that convert and score every model (each check names the runtimes it uses)."""
FILES = ("model.tflite", "predictions.npy")


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


def _files(folder: Path) -> list[Path]:
    """The checksummed files of an entry (not its meta, nor latencies timed later)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name != "meta.json" and not p.name.startswith("latency-")
    )


class ResultCache:
    """Read or write the results of one key under ``root``; ``enabled=False`` never reads."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled

    def load(self, key: str, out_dir: Path) -> tuple[dict[str, float], dict[str, str]] | None:
        """Copy a valid entry's files into ``out_dir``; its metrics and tags, or None."""
        entry = self.root / key
        meta_path = entry / "meta.json"
        if not self.enabled or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            found = {str(p.relative_to(entry)): _sha256(p) for p in _files(entry)}
            if found != meta["sha256"]:
                raise ValueError("files or checksums differ from meta.json")
            metrics = {k: float(v) for k, v in meta["metrics"].items()}
            tags = {str(k): str(v) for k, v in meta["tags"].items()}
        except Exception as error:  # any damage: rebuild, never trust it
            log.warning("results entry %s is damaged (%s): measuring again", entry, error)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        for name in found:
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry / name, target)
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
        the checks wrote there) and the given metrics under ``key``."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        for name in [*FILES, *(str(Path(f).relative_to(out_dir)) for f in files)]:
            source = out_dir / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            elif source.is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
        sums = {str(p.relative_to(staging)): _sha256(p) for p in _files(staging)}
        meta = {"sha256": sums, "metrics": metrics, "tags": tags}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        entry = self.root / key
        shutil.rmtree(entry, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:  # a parallel job stored the same result first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)

    def latency(self, key: str) -> dict[str, float] | None:
        """A latency timed earlier for this model on this host, if one was kept."""
        path = self.root / key / f"latency-{host_fingerprint()}.json"
        try:
            return {k: float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return None

    def keep_latency(self, key: str, figures: dict[str, float]) -> None:
        entry = self.root / key
        if entry.is_dir():
            path = entry / f"latency-{host_fingerprint()}.json"
            path.write_text(json.dumps(figures, sort_keys=True))

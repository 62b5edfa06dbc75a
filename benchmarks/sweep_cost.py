"""What the tool costs beyond the work itself: a grid through `python -m sweep`, cold and warm,
beside a plain hand-written script doing the same training, conversion and measuring.

Measured side by side in one run, in this order, each as its own process timed from
start to exit (TensorFlow's import included, because a user waits for it too):

1. **plain**: no tracking, no cache: for each dataset, model and training loop, train
   once; for each pre-training optimizer, fine-tune a copy once and score it with Keras;
   for each quantizer, convert, score the ``.tflite`` over the test set and time its
   latency (the same ``measure`` settings as the sweep). The options are built from the
   same YAML files, so both do the same work.
2. **cold**: ``python -m sweep --multirun`` of the same grid into an empty outputs folder.
3. **warm**: the same command again into a new sweep folder (same outputs): training,
   conversion and results come from the caches, latency is timed again.
4. **warm + reuse**: the same with ``measure.reuse_latency=true``.
5. **one quantizer added** (when the grid has more than one quantizer): the outputs as
   they were before the grid's last quantizer was ever run (a copy, with that
   quantizer's results entries removed; the trained stages stay), then the whole grid
   into a new folder, with latency re-timed and with ``reuse_latency``; beside it, the
   same copy sweeping the added quantizer alone.

With ``--launchers`` it measures instead what running jobs side by side buys on this
machine: the plain script, then the same grid cold one job at a time
(``hydra.sweeper.workers=1``) and with the default settings (a grid of several trained
models runs them side by side, one joblib worker per core, each job with TensorFlow's
default threads: the same trained models), each into an empty outputs folder, with the
peak memory of each process tree and whether every deterministic metric equals one job at
a time's.

Then a per-phase table (sums of each job's ``phase_*_seconds``; "bookkeeping" is the
sweep's wall time minus them: Python and TensorFlow start, Hydra, MLflow, the ranking),
whether every deterministic metric of the warm sweep equals the cold one's, and the
ratios the issue asks for. Nothing asserts a speed.

    .venv/bin/python benchmarks/sweep_cost.py                      # small grid, tests/data (~4 min)
    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/sweep_cost.py --paper   # 120 jobs
    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/sweep_cost.py --paper --launchers
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "dataset": ["mnist"],
    "model": ["cnn", "separable_cnn"],
    "train": ["fit"],
    "pretrain": ["none", "pruning"],
    "quantize": ["none", "dynamic_range", "float16", "int8", "int8_fallback"],
}
PAPER = {
    "dataset": ["mnist", "fashion_mnist"],
    "model": ["cnn", "separable_cnn"],
    "train": ["fit", "graph"],
    "pretrain": ["none", "pruning", "qat"],
    "quantize": ["none", "dynamic_range", "float16", "int8", "int8_fallback"],
}
PHASES = ("train", "pretrain", "convert", "accuracy", "microcontroller", "latency")


def _option(group: str, name: str, overrides: dict[str, object]):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.load(ROOT / "conf" / group / f"{name}.yaml")
    for key, value in overrides.items():
        if key.startswith(f"{group}."):
            node[key.split(".", 1)[1]] = value
    return instantiate(node, _convert_="all")


def plain(grid: dict[str, list[str]], knobs: dict[str, object]) -> dict[str, float]:
    """The same work as the sweep, hand-written: no tracking, no cache, no Hydra jobs.

    Returns the seconds spent per phase, named as the sweep's ``phase_*_seconds``.
    """
    import numpy as np

    import sweep  # noqa: F401  (Keras 2 switch before TensorFlow)
    from sweep.backend import keras
    from sweep.pipeline.sequence import Phases
    from sweep.run_settings import MeasureSettings
    from sweep.runtimes.litert import latency, predict_tflite

    phases = Phases()
    measure = MeasureSettings(
        **{k.split(".")[1]: v for k, v in knobs.items() if k.startswith("measure.")}
    )
    for dataset_name in grid["dataset"]:
        data = _option("dataset", dataset_name, knobs).load()
        for model_name, train_name in itertools.product(grid["model"], grid["train"]):
            builder, trainer = (
                _option("model", model_name, knobs),
                _option("train", train_name, knobs),
            )
            with phases("train"):
                keras.utils.set_random_seed(0)
                trained = builder.build(data.input_shape, data.num_classes)
                trainer.fit(trained, data.x_train, data.y_train)
            for pretrain_name in grid["pretrain"]:
                optimizer = _option("pretrain", pretrain_name, knobs)
                with phases("pretrain"):
                    copy = keras.models.clone_model(trained)
                    copy.set_weights(trained.get_weights())
                    model = optimizer.apply(copy, data.x_train, data.y_train, trainer)
                    model.predict(data.x_test, batch_size=1000, verbose=0)  # Keras accuracy
                for quantize_name in grid["quantize"]:
                    with phases("convert"):
                        quantizer = _option("quantize", quantize_name, knobs)
                        tflite = quantizer.convert(model, data.x_train)
                    with phases("accuracy"):
                        predictions, _ = predict_tflite(tflite, data.x_test)
                        float(np.mean(predictions == data.y_test))
                    with phases("latency"):
                        latency(tflite, data.x_test[0], measure)
    return {name: phases.seconds.get(name, 0.0) for name in PHASES}


def sweep_command(
    grid: dict[str, list[str]], knobs: dict[str, object], sweep_dir: Path
) -> list[str]:
    return [
        sys.executable, "-m", "sweep", "--multirun", f"hydra.sweep.dir={sweep_dir}",
        *(f"{group}={','.join(options)}" for group, options in grid.items()),
        *(f"{k}={v}" for k, v in knobs.items()),
    ]  # fmt: skip


LAUNCHERS = {
    "cold, one job at a time": ["hydra.sweeper.workers=1"],
    "cold, default (side by side)": [],
}
"""``--launchers``: how each cold sweep runs its jobs (the first is the reference for the
figures). ``threads=1`` was an arm until 3 December 2026: one thread trains other weights
than TensorFlow's default, so it can never keep every figure (benchmarks/README.md); so was
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` with jobs dealt one at a time, until the
default became side by side, a trained model per worker."""
PEAK_RSS: dict[str, float] = {}
"""Scenario -> the largest resident memory of its whole process tree seen (bytes)."""
CPU: dict[str, float] = {}
"""Scenario -> CPU seconds (user + system) of its process tree: on a machine shared with
other work, wall time moves with the neighbours, CPU time much less."""


def children_cpu() -> float:
    """CPU seconds of the ended child processes and everything they waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process below it (joblib's workers), from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
        rss[int(entry.name)] = int(kb) * 1024
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return sum(rss.get(pid, 0) for pid in tree)


def timed_sweep(command: list[str], outputs: Path, name: str = "") -> float:
    """Run one sweep to its end; its wall time (its tree's peak memory into PEAK_RSS)."""
    env = {**os.environ, "SWEEP_OUTPUTS": str(outputs)}
    with tempfile.TemporaryFile("w+") as log:
        started, cpu = time.perf_counter(), children_cpu()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )  # fmt: skip
        peak = 0
        while process.poll() is None:
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        PEAK_RSS[name], CPU[name] = peak, children_cpu() - cpu
        if process.returncode != 0:
            log.seek(0)
            sys.exit(f"sweep failed ({process.returncode}):\n{log.read()[-6000:]}")
    return seconds


def timed_plain(argv: list[str]) -> tuple[float, dict[str, float]]:
    """The plain script in a process of its own, timed like the sweeps; and its phases."""
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        [sys.executable, __file__, "--plain-only", *argv],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    CPU["plain"] = children_cpu() - cpu
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])


def children(outputs: Path, sweep_dir: Path) -> list:
    from mlflow.tracking import MlflowClient

    from sweep.stores.tracking import ROLE, SWEEP_ID

    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{SWEEP_ID}` = '{sweep_dir.resolve()}'", max_results=5000
    )
    return [r for r in runs if r.data.tags.get(ROLE) == "child"]


def phase_sums(runs: list) -> dict[str, float]:
    return {p: sum(r.data.metrics.get(f"phase_{p}_seconds", 0.0) for r in runs) for p in PHASES}


def _same_work(run) -> tuple[str, str]:
    """What a job computes: its sequence and knobs, ``threads`` left out (it changes how the
    job runs, and so its config hash, not what it is asked to compute)."""
    from sweep.stores.tracking import SETTINGS_TAG

    knobs = run.data.tags.get(SETTINGS_TAG, "").split()
    return run.data.tags["sequence"], " ".join(k for k in knobs if not k.startswith("threads="))


def differing_sequences(cold: list, warm: list) -> list[str]:
    """Sequences whose deterministic metrics differ between two sweeps of one grid."""
    from sweep.metrics import reproducible

    by_work = {_same_work(r): r for r in cold}
    return [
        r.data.tags["sequence"]
        for r in warm
        if reproducible(r.data.metrics) != reproducible(by_work[_same_work(r)].data.metrics)
    ]


def before_quantizer(outputs: Path, cold: list, quantizer: str, copy: Path) -> Path:
    """A copy of ``outputs`` as it was before ``quantizer`` ever ran: its results removed."""
    shutil.copytree(outputs, copy)
    for run in cold:
        if run.data.tags["sequence.quantize"] == quantizer:
            shutil.rmtree(copy / "cache" / "results" / run.data.tags["results.key"])
    return copy


def print_phases(walls: dict[str, float], phases: dict[str, dict[str, float]]) -> None:
    print("\n| phase (s, summed over jobs) | " + " | ".join(walls) + " |")
    print("|---|" + "---|" * len(walls))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{phases[n][phase]:.1f}" for n in walls) + " |")
    print("| bookkeeping (wall − phases) | " + " | ".join(
        f"{walls[n] - sum(phases[n].values()):.1f}" for n in walls) + " |")  # fmt: skip
    print("| wall | " + " | ".join(f"{walls[n]:.1f}" for n in walls) + " |")


def launchers(
    grid: dict[str, list[str]], knobs: dict[str, object], plain_s: float, plain_p: dict
) -> None:
    """Cold sweeps of the grid, one per way of running its jobs (:data:`LAUNCHERS`)."""
    walls, phases, runs = {"plain": plain_s}, {"plain": plain_p}, {}
    with tempfile.TemporaryDirectory(prefix="sweep-launchers-") as tmp:
        for index, (name, extra) in enumerate(LAUNCHERS.items()):
            outputs = Path(tmp) / f"outputs-{index}"
            sweep_dir = outputs / "multirun" / "cold"
            command = [*sweep_command(grid, knobs, sweep_dir), *extra]
            walls[name] = timed_sweep(command, outputs, name)
            runs[name] = children(outputs, sweep_dir)
            phases[name] = phase_sums(runs[name])
            print(
                f"{name}: {walls[name]:.0f} s ({CPU[name]:.0f} CPU s), peak memory "
                f"{PEAK_RSS[name] / 1e9:.2f} GB; load {Path('/proc/loadavg').read_text()[:14]}"
            )
    print_phases(walls, phases)
    print("| CPU (user + system, process tree) | " + " | ".join(
        f"{CPU[n]:.1f}" for n in walls) + " |")  # fmt: skip
    print("| peak memory (GB, process tree) | — | " + " | ".join(
        f"{PEAK_RSS[n] / 1e9:.2f}" for n in LAUNCHERS) + " |")  # fmt: skip
    basic = next(iter(LAUNCHERS))
    print()
    for name in LAUNCHERS:
        differing = differing_sequences(runs[basic], runs[name])
        print(
            f"{name} / plain script: {walls[name] / plain_s:.2f}×; deterministic metrics equal "
            f"to {basic}'s: {len(runs[name]) - len(differing)} of {len(runs[name])}"
            + (f" (differing: {differing[:4]}{' ...' if len(differing) > 4 else ''})"
               if differing else "")
        )  # fmt: skip
    print(json.dumps({name: round(wall, 1) for name, wall in walls.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="the 120-sequence paper grid")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--launchers", action="store_true", help="cold: one job at a time vs side by side"
    )
    parser.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    grid = PAPER if args.paper else SMALL
    knobs: dict[str, object] = {}
    if not args.paper:
        os.environ.setdefault("SWEEP_DATA_DIR", str(ROOT / "tests" / "data"))
        knobs.update({"train.epochs": 2})
    if args.train_limit:
        knobs["dataset.train_limit"] = args.train_limit
    if args.epochs:
        knobs["train.epochs"] = args.epochs
    if args.plain_only:
        print(json.dumps(plain(grid, knobs)))
        return
    jobs = 1
    for options in grid.values():
        jobs *= len(options)
    print(f"grid: {jobs} sequences; data: {os.environ.get('SWEEP_DATA_DIR', 'default')}; {knobs}")

    plain_seconds, plain_phases = timed_plain([a for a in sys.argv[1:] if a != "--launchers"])
    print(
        f"plain script: {plain_seconds:.0f} s ({CPU['plain']:.0f} CPU s); "
        f"load {Path('/proc/loadavg').read_text()[:14]}"
    )
    if args.launchers:
        launchers(grid, knobs, plain_seconds, plain_phases)
        return
    added = grid["quantize"][-1]
    with tempfile.TemporaryDirectory(prefix="sweep-cost-") as tmp:
        outputs = Path(tmp) / "outputs"
        walls, phases, runs = {"plain": plain_seconds}, {"plain": plain_phases}, {}
        scenarios = [
            ("cold", outputs, grid, {}),
            ("warm", outputs, grid, {}),
            ("warm + reuse", outputs, grid, {"measure.reuse_latency": "true"}),
        ]
        if len(grid["quantize"]) > 1:
            scenarios += [
                (f"{added} added", Path(tmp) / "added", grid, {}),
                (f"{added} added + reuse", Path(tmp) / "added-reuse", grid,
                 {"measure.reuse_latency": "true"}),
                (f"{added} alone", Path(tmp) / "alone", {**grid, "quantize": [added]}, {}),
            ]  # fmt: skip
        for name, where, options, extra in scenarios:
            if where != outputs:
                before_quantizer(outputs, runs["cold"], added, where)
            sweep_dir = where / "multirun" / name.replace(" + ", "-").replace(" ", "-")
            command = sweep_command(options, {**knobs, **extra}, sweep_dir)
            walls[name] = timed_sweep(command, where, name)
            runs[name] = children(where, sweep_dir)
            phases[name] = phase_sums(runs[name])
            print(f"{name}: {walls[name]:.0f} s")
        differing = differing_sequences(runs["cold"], runs["warm"])

    print_phases(walls, phases)
    walls.pop("plain")
    print(f"\ncold / plain script: {walls['cold'] / plain_seconds:.2f}×  (issue 14 asks ≤ 1.05×)")
    print(f"warm / cold: {walls['warm'] / walls['cold']:.2f}  (asks ≤ 0.15)")
    print(f"warm with reused latency / cold: {walls['warm + reuse'] / walls['cold']:.2f}")
    print(
        f"deterministic metrics identical, cold vs warm: {len(runs['warm']) - len(differing)} "
        f"of {len(runs['warm'])} sequences" + (f"; differing: {differing}" if differing else "")
    )
    if f"{added} alone" in walls:
        new_jobs = [r for r in runs["cold"] if r.data.tags["sequence.quantize"] == added]
        share = len(new_jobs) / len(runs["cold"])
        new_phases = phase_sums(new_jobs)
        cold_cost = sum(new_phases.values()) - new_phases["train"] - new_phases["pretrain"]
        cold_cost += share * (walls["cold"] - sum(phases["cold"].values()))
        print(
            f"\n{added} added to the finished grid ({len(new_jobs)} new of {len(runs['cold'])}): "
            f"{walls[f'{added} added']:.0f} s with latency re-timed, "
            f"{walls[f'{added} added + reuse']:.0f} s reusing it; "
            f"the {len(new_jobs)} new sequences alone: {walls[f'{added} alone']:.0f} s; "
            f"their share of the cold sweep (convert, measure, bookkeeping): {cold_cost:.0f} s"
        )
        print(json.dumps({name: round(wall, 1) for name, wall in walls.items()}))


if __name__ == "__main__":
    main()

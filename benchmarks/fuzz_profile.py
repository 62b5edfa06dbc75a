"""Fuzz ``sweep-profile``: hundreds of damaged models, none may hang, crash or print a traceback.

    python benchmarks/fuzz_profile.py [--files 500] [--seed 0] [--workers 2]
        [--models tests/data/*.tflite ...] [--cli 10] [--keep DIR] [-- OVERRIDES...]

Seeded mutations of real models (by default every ``.tflite`` in ``tests/data``):

- ``bitflip``: 1-16 random bits flipped;
- ``truncate``: the file cut at a random length;
- ``word``: a random aligned 32-bit word (offsets, lengths, indices) set to an
  "interesting" value (0, -1, 2^31-1, a large count, ...);
- ``field``: one field of the flatbuffer, parsed and re-packed with TFLite's own schema
  (a tensor's shape, type, buffer or quantization; an operator's opcode or its input
  and output indices; a subgraph's inputs; an opcode's builtin or custom code; a
  buffer's bytes; an option of an operator), set to a hostile value.

Each file goes through ``sweep-profile FILE target=cortex_m4 target.emulate=false`` (the
emulator is another concern; its budget is its own), in worker processes that import
the tool once (its start-up imports TensorFlow: tens of seconds per process) and call
its ``main()`` per file, capturing what it prints. A worker that takes longer than
``--budget`` seconds on one file is killed and the file counted as a hang; a worker that
dies (a crash of sweep-profile's own process) is counted as a crash. ``--cli N`` runs N
of the files (evenly spread) again through the real command, as a user runs it, and
checks the exit status and the absence of a traceback match.

Prints: files per mutation, exit statuses, wall time per file (median, max), hangs,
crashes, tracebacks (with their last line), the workers' peak memory, the CLI check.
Exit status 0 when every status is 0, 1 or 2 and nothing hung, crashed or printed a
traceback.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 150.0
"""A file may take this long: tflite-micro's child gets 60 s to start and 20 s for the first
invoke (sweep.runtimes.isolated), the rest is sweep-profile's own work on a busy machine."""
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 16, 255, 256, 1024, 65535, 2**31 - 1, 2**31, 2**32 - 1, 10**9]
KINDS = ("bitflip", "truncate", "word", "field")


# --------------------------------------------------------------------------- mutations


def bitflip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        position = rng.randrange(len(out) * 8)
        out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def word(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    offset = rng.randrange(0, len(out) - 4, 4)
    value = rng.choice([*INTERESTING, rng.randrange(2**32)]) % 2**32
    out[offset : offset + 4] = value.to_bytes(4, "little")
    return bytes(out)


def _hostile_int(rng: random.Random, signed: bool = True) -> int:
    pool = [*INTERESTING, -1, -2, -(2**31)] if signed else INTERESTING
    value = rng.choice([*pool, rng.randrange(-(2**16), 2**16)])
    return value if signed else abs(value) % 2**32


def _tensor(rng, model):
    graph = rng.choice(model.subgraphs)
    return rng.choice(graph.tensors) if graph.tensors else None


def _field_mutators():
    import numpy as np

    def shape(rng, model):
        if tensor := _tensor(rng, model):
            dims = [rng.choice([*INTERESTING[:12], -1, 0]) for _ in range(rng.randint(0, 6))]
            if rng.random() < 0.5:
                dims[rng.randrange(len(dims))] = _hostile_int(rng) if dims else 0
            tensor.shape = np.array(dims, dtype=np.int64).astype(np.int32)

    def tensor_type(rng, model):
        if tensor := _tensor(rng, model):
            tensor.type = rng.randrange(0, 24)

    def buffer_index(rng, model):
        if tensor := _tensor(rng, model):
            tensor.buffer = _hostile_int(rng, signed=False)

    def quantization(rng, model):
        if (tensor := _tensor(rng, model)) and tensor.quantization is not None:
            q = tensor.quantization
            q.scale = np.array([rng.choice([np.nan, np.inf, -1.0, 0.0, 1e-38, 1e38])] *
                               rng.randint(0, 3), dtype=np.float32)  # fmt: skip
            q.zeroPoint = np.array([_hostile_int(rng)] * rng.randint(0, 3), dtype=np.int64)

    def operator(rng, model):
        graph = rng.choice(model.subgraphs)
        if not graph.operators:
            return
        op = rng.choice(graph.operators)
        which = rng.choice(["opcode", "inputs", "outputs", "cycle"])
        if which == "opcode":
            op.opcodeIndex = _hostile_int(rng, signed=False)
        elif which == "cycle" and op.outputs is not None and len(op.outputs):
            op.inputs = np.array(op.outputs, dtype=np.int32)  # reads what it writes
        else:
            values = [_hostile_int(rng) for _ in range(rng.randint(0, 4))]
            setattr(op, which, np.array(values, dtype=np.int64).astype(np.int32))

    def graph_io(rng, model):
        graph = rng.choice(model.subgraphs)
        values = [_hostile_int(rng) for _ in range(rng.randint(0, 3))]
        setattr(graph, rng.choice(["inputs", "outputs"]), np.array(values).astype(np.int32))

    def opcode(rng, model):
        if model.operatorCodes:
            code = rng.choice(model.operatorCodes)
            if rng.random() < 0.6:
                code.builtinCode = rng.randrange(0, 256)
                code.deprecatedBuiltinCode = rng.choice([code.builtinCode % 128, 32, 127])
            else:
                code.builtinCode, code.deprecatedBuiltinCode = 32, 32  # CUSTOM
                code.customCode = rng.choice(
                    ["", "x" * 70000, '\x00"; }; int main(){', "Ünïcødé", "%s%s%n"]
                )

    def buffer_data(rng, model):
        if model.buffers:
            buffer = rng.choice(model.buffers)
            size = rng.choice([0, 1, 3, 1000, 100000])
            buffer.data = np.frombuffer(rng.randbytes(size), dtype=np.uint8)

    def options(rng, model):
        graph = rng.choice(model.subgraphs)
        ops = [op for op in graph.operators or [] if op.builtinOptions is not None]
        if ops:
            opts = rng.choice(ops).builtinOptions
            names = [n for n, v in vars(opts).items() if isinstance(v, int | float)]
            if names:
                setattr(opts, rng.choice(names), _hostile_int(rng))

    return [shape, tensor_type, buffer_index, quantization, operator, graph_io, opcode,
            buffer_data, options]  # fmt: skip


def field(rng: random.Random, data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    rng.choice(_field_mutators())(rng, model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def make_files(models: list[Path], count: int, seed: int, folder: Path) -> list[dict]:
    """``count`` mutated files in ``folder``, deterministic for a seed."""
    rng = random.Random(seed)
    sources = [(p, p.read_bytes()) for p in models]
    made = []
    for n in range(count):
        source, data = sources[n % len(sources)]
        kind = KINDS[rng.randrange(len(KINDS))]
        try:
            mutated = globals()[kind](rng, data)
        except Exception:  # a field the object API cannot re-pack: flip bits instead
            kind, mutated = "bitflip", bitflip(rng, data)
        path = folder / f"fuzz-{n:04d}-{kind}.tflite"
        path.write_bytes(mutated)
        made.append({"n": n, "file": str(path), "kind": kind, "source": source.name})
    return made


# --------------------------------------------------------------------------- the workers


class _Current(io.TextIOBase):
    """A stream that writes to whatever capture is current (logging's handler keeps one)."""

    target: io.StringIO = io.StringIO()

    def write(self, text: str) -> int:
        return _Current.target.write(text)


def worker(tasks: Path, log: Path, overrides: list[str]) -> None:
    """Run sweep-profile's main() on each file of ``tasks``; one JSON line per file."""
    import logging

    logging.basicConfig(stream=_Current(), level=logging.ERROR)
    from sweep.cli.sweep_profile import main
    from sweep.pipeline import components  # noqa: F401  (TensorFlow's import: not any file's time)

    with log.open("a", buffering=1) as out:
        for line in tasks.read_text().splitlines():
            n, path = line.split("\t", 1)
            out.write(f"started {n}\n")
            capture = _Current.target = io.StringIO()
            started, trace = time.perf_counter(), None
            try:
                with contextlib.redirect_stdout(capture), contextlib.redirect_stderr(capture):
                    status = main([path, *overrides])
            except BaseException:  # what the real command would print as a traceback
                status, trace = 1, traceback.format_exc()
            text = capture.getvalue()
            if trace is None and "Traceback (most recent call last)" in text:
                trace = text
            result = {
                "n": int(n),
                "status": status,
                "seconds": time.perf_counter() - started,
                "first_line": (text.strip().splitlines() or [""])[0][:300],
                "traceback": trace,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
            out.write("done " + json.dumps(result) + "\n")


def _start_worker(files: list[dict], folder: Path, index: int, overrides: list[str]):
    tasks, log = folder / f"worker-{index}.tasks", folder / f"worker-{index}.log"
    tasks.write_text("".join(f"{f['n']}\t{f['file']}\n" for f in files))
    log.write_text("")
    command = [sys.executable, __file__, "--worker", str(tasks), str(log), "--", *overrides]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    return {"process": process, "log": log, "files": files, "read": 0, "since": None}


def _kill_session(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_all(files: list[dict], workers: int, budget: float, folder: Path, overrides: list[str]):
    """Every file through a worker; hangs and crashes recorded, workers restarted."""
    results: dict[int, dict] = {}
    queues = [files[i::workers] for i in range(workers)]
    running = [_start_worker(q, folder, i, overrides) for i, q in enumerate(queues) if q]
    restarts = 0
    while running:
        time.sleep(0.2)
        for slot in list(running):
            lines = slot["log"].read_text().splitlines()
            current = None
            for line in lines[slot["read"] :]:
                if line.startswith("started "):
                    current, slot["since"] = int(line.split()[1]), time.monotonic()
                elif line.startswith("done "):
                    found = json.loads(line[5:])
                    results[found["n"]] = found
                    current = None
            slot["read"] = len(lines)
            if current is not None:
                slot["current"] = current
            busy = slot.get("current") if slot.get("current") not in results else None
            process: subprocess.Popen = slot["process"]
            hung = busy is not None and time.monotonic() - slot["since"] > budget
            if process.poll() is None and not hung:
                continue
            if process.poll() is None:
                _kill_session(process)
                results[busy] = {"n": busy, "status": "hang", "seconds": budget}
            elif busy is not None:
                results[busy] = {"n": busy, "status": f"crash ({process.returncode})",
                                 "seconds": time.monotonic() - slot["since"]}  # fmt: skip
            else:
                _kill_session(process)  # finished: its fork server and tracker end too
            running.remove(slot)
            left = [f for f in slot["files"] if f["n"] not in results]
            if left:
                restarts += 1
                running.append(_start_worker(left, folder, 100 + restarts, overrides))
    return [results[f["n"]] | f for f in files], restarts


def cli_check(files: list[dict], results: list[dict], count: int, overrides: list[str]) -> list:
    """Some files again through the real command; [(file, in-process status, CLI status)]."""
    if count <= 0:
        return []
    step = max(1, len(files) // count)
    checked = []
    for found in results[::step][:count]:
        done = subprocess.run(
            [sys.executable, "-m", "sweep.cli.sweep_profile", found["file"], *overrides],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        traced = "Traceback (most recent call last)" in done.stdout + done.stderr
        checked.append((Path(found["file"]).name, found["status"], done.returncode, traced))
    return checked


# --------------------------------------------------------------------------- the report


def report(results: list[dict], restarts: int, checked: list, seed: int) -> bool:
    statuses = collections.Counter(str(r["status"]) for r in results)
    kinds = collections.Counter(r["kind"] for r in results)
    by_kind = collections.defaultdict(collections.Counter)
    for r in results:
        by_kind[r["kind"]][str(r["status"])] += 1
    seconds = [r["seconds"] for r in results]
    traced = [r for r in results if r.get("traceback")]
    slowest = max(results, key=lambda r: r["seconds"])
    rss = max((r.get("maxrss_kb", 0) for r in results), default=0)
    print(f"files: {len(results)} (seed {seed}); mutations: {dict(sorted(kinds.items()))}")
    print(f"exit statuses: {dict(sorted(statuses.items()))}")
    for kind in KINDS:
        print(f"  {kind:<9} {dict(sorted(by_kind[kind].items()))}")
    print(f"wall time per file: median {statistics.median(seconds):.2f} s, "
          f"max {slowest['seconds']:.1f} s ({Path(slowest['file']).name}: "
          f"{slowest.get('first_line', '')[:160]})")  # fmt: skip
    print(f"peak memory of a sweep-profile process: {rss / 1024:.0f} MiB; worker restarts: "
          f"{restarts}")  # fmt: skip
    print(f"tracebacks: {len(traced)}")
    for r in traced[:20]:
        last = r["traceback"].strip().splitlines()[-1]
        print(f"  {Path(r['file']).name}: {last[:200]}")
    for name, inside, cli, trace in checked:
        print(f"  cli {name}: in-process {inside}, command {cli}{', TRACEBACK' if trace else ''}")
    if checked:
        same = sum(1 for _, inside, cli, trace in checked if inside == cli and not trace)
        print(f"cli check: {same} of {len(checked)} files give the same status, no traceback")
    good = set(statuses) <= {"0", "1", "2"} and not traced
    return good and all(inside == cli and not trace for _, inside, cli, trace in checked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS)
    parser.add_argument("--models", type=Path, nargs="*",
                        default=sorted((ROOT / "tests" / "data").glob("*.tflite")))  # fmt: skip
    parser.add_argument("--cli", type=int, default=10, help="files checked with the real command")
    parser.add_argument("--keep", type=Path, help="keep the fuzzed files in this folder")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args(argv)
    overrides = args.overrides or ["target=cortex_m4", "target.emulate=false"]
    if args.worker:
        worker(*args.worker, overrides)
        return 0
    with tempfile.TemporaryDirectory(prefix="fuzz-profile-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SWEEP_OUTPUTS", str(Path(tmp) / "outputs"))
        files = make_files(args.models, args.files, args.seed, folder)
        print(f"{len(files)} files from {[p.name for p in args.models]}; sweep-profile "
              f"{' '.join(overrides)}; {args.workers} workers", flush=True)  # fmt: skip
        started = time.monotonic()
        results, restarts = run_all(files, args.workers, args.budget, folder, overrides)
        print(f"done in {time.monotonic() - started:.0f} s", flush=True)
        checked = cli_check(files, results, args.cli, overrides)
        return 0 if report(results, restarts, checked, args.seed) else 1


if __name__ == "__main__":
    sys.exit(main())

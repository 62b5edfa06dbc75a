"""``sweep-profile MODEL.tflite target=<board> [overrides] [--mlflow]``: any .tflite on a board.

A sweep measures the models it trains; an embedded engineer often holds a
``.tflite`` from elsewhere and asks the same questions of it: does it run on the
board's runtime, how much arena, flash and RAM does it need, does it fit, how
long would one inference take and what would it cost in energy, which operators
must the firmware register. This command answers them with the same parts a
sweep uses (tflite-micro, the firmware bundle, the emulated Cortex-M build and the
core's cycle model with the board's memory system, whose band and basis it prints),
with the target composed by Hydra from the project's ``conf/``, so the same
YAMLs, overrides (``target=cortex_m4 target.clock_mhz=120``) and one-line
messages for bad settings apply.

The model comes without data: it is fed deterministic pseudo-random inputs of its
input shape (seed 0; uniform over the integer type's range, or [0, 1) for a
float input), which int8 kernels execute along the same path as real data, and no
accuracy is reported; or, with ``dataset=<option>``, the test split of that dataset
(accuracy on tflite-micro included). The board's checks (``target.checks``) run
exactly as in a sweep's job (:meth:`sweep.groups.target.Target.measure`), so the
same model and target give the same figures both ways; figures of a check this
report does not lay out (a check of your own) are listed by their metric rows.

Exit status: 0 the model runs and fits the board; 1 it does not run or does not
fit (the first line says why; a model that does not finish within its budget does not
run); 2 the file is not a TFLite model, declares a shape no runtime could hold, or a
setting is bad (one line on stderr, no traceback). A file from anywhere costs a bounded
time and memory: its runtimes run in limited child processes
(:mod:`sweep.runtimes.isolated`), and its shapes are checked before anything of them is
made.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from sweep import strict_json
from sweep.errors import UserError, exits_on_error, one_line

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SEED = 0
ROLE_PROFILE = "profile"
_TFLITE_IDENTIFIER = b"TFL3"
MAX_INPUT_ELEMENTS = 2**25
"""Pseudo-random input values made at most (~400 MiB while they are drawn)."""


class ProfileError(UserError, ValueError):
    """The input cannot be profiled: one line for the user, exit status 2."""


# --------------------------------------------------------------------------- the model file


@dataclass(frozen=True)
class TensorSpec:
    """Input or output 0 of a model, as its flatbuffer declares it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    def describe(self) -> str:
        return f"{self.dtype.name} {'×'.join(str(d) for d in self.shape)}"


def _numpy_dtype(code: int) -> np.dtype | None:
    from ai_edge_litert import schema_py_generated as schema

    types = schema.TensorType
    return {
        types.FLOAT32: np.dtype(np.float32),
        types.FLOAT16: np.dtype(np.float16),
        types.INT8: np.dtype(np.int8),
        types.UINT8: np.dtype(np.uint8),
        types.INT16: np.dtype(np.int16),
        types.INT32: np.dtype(np.int32),
        types.INT64: np.dtype(np.int64),
        types.BOOL: np.dtype(np.bool_),
    }.get(code)


def _checked_shape(shape: tuple[int, ...], dtype: np.dtype, role: str) -> tuple[int, ...]:
    """The shape of input/output 0, if a runtime could hold such a tensor: every dimension
    at least 1, and no more bytes than the largest arena tflite-micro is given. Checked
    before anything of that shape is made, so a few hundred bytes of file cannot make
    this process allocate gigabytes."""
    from sweep.runtimes.tflm import MAX_ARENA_BYTES

    shown = str(list(shape[:8]))[:-1] + (
        f", ... ({len(shape)} dimensions)]" if len(shape) > 8 else "]"
    )
    if any(d < 1 for d in shape):
        raise ProfileError(f"its {role} has the shape {shown}: every dimension must be at least 1")
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_ARENA_BYTES:
        raise ProfileError(
            f"its {role} of shape {shown} ({dtype.name}) needs {size:,} bytes, more than "
            f"the {MAX_ARENA_BYTES:,}-byte arena tflite-micro is given"
        )
    return shape


def _tensor_spec(graph: Any, index: int, role: str) -> TensorSpec:
    tensor = graph.Tensors(index)
    dtype = _numpy_dtype(tensor.Type())
    if dtype is None:
        raise ProfileError(f"{role} tensor type code {tensor.Type()} is not supported")
    q = tensor.Quantization()
    scale = float(q.ScaleAsNumpy()[0]) if q is not None and q.ScaleLength() else 0.0
    zero_point = int(q.ZeroPointAsNumpy()[0]) if q is not None and q.ZeroPointLength() else 0
    if not math.isfinite(scale):
        raise ProfileError(f"its {role} has the quantization scale {scale}: not a number")
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    return TensorSpec(_checked_shape(shape, dtype, role), dtype, scale, zero_point)


@dataclass(frozen=True)
class ModelFile:
    """What the flatbuffer itself says: input 0, output 0, operators, tensor types."""

    data: bytes
    input: TensorSpec
    output: TensorSpec
    operators: list[str]
    tensor_types: frozenset[str]


def read_model(path: Path) -> ModelFile:
    """The model at ``path`` as its flatbuffer declares it; ProfileError (one line) if the
    file is not a TFLite flatbuffer this tool can read."""
    from ai_edge_litert import schema_py_generated as schema

    from sweep.runtimes.flatbuffer import operator_names

    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProfileError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise ProfileError(
            f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier at bytes 4-8; "
            f"{len(data)} bytes)"
        )
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    try:
        model = schema.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ProfileError("a TFLite file without a subgraph")
        graph = model.Subgraphs(0)
        if graph.InputsLength() < 1 or graph.OutputsLength() < 1:
            raise ProfileError("a TFLite model without inputs or outputs")
        found = ModelFile(
            data=data,
            input=_tensor_spec(graph, graph.Inputs(0), "input 0"),
            output=_tensor_spec(graph, graph.Outputs(0), "output 0"),
            operators=operator_names(data),
            tensor_types=frozenset(
                names.get(graph.Tensors(t).Type(), "?") for t in range(graph.TensorsLength())
            ),
        )
    except ProfileError as error:
        raise ProfileError(f"{path}: {error}") from None
    except Exception as error:  # a damaged flatbuffer fails anywhere inside the reader
        raise ProfileError(
            f"{path} is not a readable TFLite model (damaged flatbuffer: "
            f"{type(error).__name__}: {error})"
        ) from None
    return found


def pseudo_random_inputs(spec: TensorSpec, n: int) -> tuple[np.ndarray, str]:
    """``n`` deterministic inputs for a model without data, as float images for
    :meth:`~sweep.groups.target.Microcontroller.evaluate` (which quantizes them back to
    exactly the drawn integers), and the sentence that says what they are."""
    rng = np.random.default_rng(SEED)
    shape = (n, *spec.shape[1:])
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        from sweep.settings import ConfigError

        raise ConfigError(
            f"--images={n} is not valid for an input of shape {list(spec.shape)}: at most "
            f"{MAX_INPUT_ELEMENTS // max(1, math.prod(shape[1:])):,} images of it "
            f"({MAX_INPUT_ELEMENTS:,} values in all)."
        )
    what = f"{n} deterministic pseudo-random input{'s' if n > 1 else ''} of shape " + "×".join(
        str(d) for d in spec.shape
    )
    if spec.dtype.kind in "iu":
        if not spec.scale:
            raise ProfileError(
                f"its {spec.dtype.name} input has no quantization parameters: cannot feed it"
            )
        info = np.iinfo(spec.dtype)
        q = rng.integers(info.min, int(info.max) + 1, shape)
        x = ((q - spec.zero_point) * spec.scale).astype(np.float32)
        return x, f"{what}, uniform over {spec.dtype.name} (seed {SEED})"
    if spec.dtype.kind == "f":
        return rng.random(shape, dtype=np.float32), f"{what}, uniform in [0, 1) (seed {SEED})"
    raise ProfileError(f"its {spec.dtype.name} input cannot be fed pseudo-random values")


# --------------------------------------------------------------------------- the target


def board_names() -> list[str]:
    """The boards of the ``target`` group in the project's conf/ (not the host, not the
    per-CPU bases ``_<cpu>.yaml`` that boards compose)."""
    return sorted(
        p.stem for p in (CONF / "target").glob("*.yaml") if p.stem != "host" and p.stem[0] != "_"
    )


def compose_target(overrides: list[str]):  # -> (Microcontroller, DictConfig)
    """The ``target`` of the config composed from conf/ with these overrides, instantiated
    and checked as a sweep checks it; ConfigError (one line) otherwise."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from sweep.groups.target import Microcontroller
    from sweep.pipeline.components import instantiate_group
    from sweep.settings import ConfigError
    from sweep.stores.paths import register_resolvers

    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except MissingConfigException as error:
        options = getattr(error, "options", None)
        missing = getattr(error, "missing_cfg_file", None)
        if missing and options:
            group = missing.rsplit("/", 1)[0]
            if group == "target":
                options = board_names()
            raise ConfigError(
                f"{missing.replace('/', '=', 1)} is not valid: expected one of {options} "
                f"(configs under {CONF / group})."
            ) from None
        raise ConfigError(one_line(error)) from None
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(one_line(error)) from None
    target, _ = instantiate_group("target", cfg.target)
    if not isinstance(target, Microcontroller):
        raise ConfigError(
            f"target={target.name} is not a board: sweep-profile needs a microcontroller "
            f"target, e.g. target=cortex_m4 (one of {board_names()})."
        )
    return target, cfg


def load_dataset(cfg: Any) -> Any:
    """The dataset a ``dataset=...`` override names, read and checked as a sweep reads it
    (DataError, one line, on a bad file)."""
    from sweep.pipeline.components import instantiate_group

    source, _ = instantiate_group("dataset", cfg.dataset)
    return source.load()


# --------------------------------------------------------------------------- the profile


@dataclass
class Profile:
    """What sweep-profile found: the metrics and tags a run would log, and the facts shown."""

    path: Path
    board: Any  # Microcontroller
    model_bytes: int
    sha256: str
    input: TensorSpec
    output: TensorSpec
    operators: list[str]
    inputs_note: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    emulation_note: str = ""
    tensor_types: frozenset[str] = frozenset()

    @property
    def runs(self) -> bool:
        return bool(self.metrics.get("mcu_runs"))

    @property
    def fits(self) -> bool:
        return bool(self.metrics.get("fits_target"))


def _inputs(file: ModelFile, images: int, data: Any | None) -> tuple[np.ndarray, Any, str]:
    """What the model is fed: the test split of ``data`` (with labels), or ``images``
    deterministic pseudo-random inputs (no labels)."""
    if data is None:
        x, note = pseudo_random_inputs(file.input, max(1, images))
        return x, None, note
    expected = tuple(int(d) for d in file.input.shape[1:])
    if int(np.prod(expected)) != int(np.prod(data.input_shape)):
        raise ProfileError(
            f"the model's input {file.input.describe()} does not take the images of dataset "
            f"{data.name} ({'×'.join(map(str, data.input_shape))})"
        )
    note = f"the {len(data.y_test)} test images of dataset {data.name} ({data.source})"
    return data.x_test, data.y_test, note


def profile(
    path: Path, board, images: int = 1, bundle_dir: Path | None = None, data: Any | None = None
) -> Profile:
    """Measure the model at ``path`` on ``board`` (a Microcontroller target) with the board's
    checks, as a sweep's job does; keep its bundle in ``bundle_dir`` if given. ``data`` (a
    Dataset) feeds its test split and reports accuracy; else pseudo-random inputs."""
    from sweep.checks import ModelUnderTest
    from sweep.checks.board_emulation import REASON

    file = read_model(Path(path))
    try:
        x, y, note = _inputs(file, images, data)
        desktop = None
        if y is not None:
            from sweep.runtimes.isolated import RuntimeCrashed, stopped_reason
            from sweep.runtimes.litert import predict_in_child

            try:
                desktop = float(np.mean(predict_in_child(file.data, x, 1) == y))
            except RuntimeCrashed as stopped:
                raise ProfileError(stopped_reason(stopped, "LiteRT")) from None  # path: below
        with tempfile.TemporaryDirectory(prefix="sweep-profile-") as tmp:
            measured = board.measure(ModelUnderTest(file.data, x, y, Path(tmp), desktop))
            if bundle_dir is not None and (Path(tmp) / "bundle").is_dir():
                shutil.copytree(Path(tmp) / "bundle", bundle_dir, dirs_exist_ok=True)
    except ValueError as error:
        raise ProfileError(f"{path}: {one_line(error)}") from None
    found = Profile(
        path=Path(path),
        board=board,
        model_bytes=len(file.data),
        sha256=hashlib.sha256(file.data).hexdigest(),
        input=file.input,
        output=file.output,
        operators=file.operators,
        inputs_note=note,
        metrics=dict(measured.metrics),
        tags=dict(measured.tags),
        tensor_types=file.tensor_types,
    )
    if not found.runs:
        found.emulation_note = "not emulated: it does not run on the board's runtime"
    elif not board.emulate:
        found.emulation_note = f"not emulated: target.emulate=false for {board.name}"
    elif "mcu_instructions" not in found.metrics:
        found.emulation_note = f"not emulated: {found.tags.get(REASON, 'no reason given')}"
    return found


# --------------------------------------------------------------------------- the report


def _b(value: float | None) -> str:
    return "?" if value is None else f"{int(value):,} B"


def _band(found: Profile) -> str | None:
    """The estimate's band in ms (and µJ at the board's power), if the cycle model gave one."""
    m, board = found.metrics, found.board
    if "mcu_est_latency_low_ms" not in m:
        return None
    low, high = m["mcu_est_latency_low_ms"], m.get("mcu_est_latency_high_ms")
    power = board.active_power_mw
    if high is None:  # the board describes no memory system: only a floor is known
        return f"at least {low:,.1f} ms" + (f", {low * power:,.0f} µJ" if power else "")
    text = f"band {low:,.1f}-{high:,.1f} ms"
    if power is not None:
        text += f", {low * power:,.0f}-{high * power:,.0f} µJ"
    return text


_LAID_OUT = {
    "mcu_runs", "arena_bytes", "flash_bytes_needed", "ram_bytes_needed", "fits_flash", "fits_ram",
    "fits_target", "firmware_flash_bytes", "firmware_ram_bytes", "mcu_instructions",
    "mcu_emulated_parity_ok", "mcu_est_latency_ms", "mcu_est_energy_uj", "mcu_emulated",
    "mcu_accuracy", "mcu_est_cycles", "mcu_est_latency_low_ms", "mcu_est_latency_high_ms",
}  # fmt: skip
"""Metrics the report lays out itself; any other is listed by its row of the metrics table."""


def _other_figures(metrics: dict[str, float]) -> list[tuple[str, str]]:
    from sweep.metrics import METRICS

    rows = []
    for name in sorted(set(metrics) - _LAID_OUT):
        row = METRICS.get(name)
        unit = f" {row.unit}" if row is not None and row.unit else ""
        heading = f" ({row.heading})" if row is not None else ""
        rows.append((name, f"{metrics[name]:,.6g}{unit}{heading}"))
    return rows


def verdict(found: Profile) -> str:
    """The one line that answers "does it work on this board?"."""
    board, m = found.board, found.metrics
    head = f"{found.path.name} on {board.name} ({board.cpu} @ {board.clock_mhz:g} MHz)"
    if not found.runs:
        reason = found.tags.get("mcu_reason", "")
        if "float16" in found.tensor_types:
            reason = f"it stores float16 tensors, which {board.runtime} does not run ({reason})"
        return f"{head}: does not run on {board.runtime}: {reason}"
    if not found.fits:
        why = found.tags.get("mcu_fit_reason", "").split(": ", 1)[-1]
        return f"{head}: runs on {board.runtime} but does not fit: {why}"
    text = f"{head}: runs on {board.runtime} and fits"
    if "mcu_est_latency_ms" in m:
        text += f"; estimated {m['mcu_est_latency_ms']:,.1f} ms"
        if "mcu_est_energy_uj" in m:
            text += f" and {m['mcu_est_energy_uj']:,.0f} µJ"
        text += " per inference"
    return text


def report_lines(found: Profile) -> list[str]:
    board, m = found.board, found.metrics
    rows: list[tuple[str, str]] = [
        (
            "model",
            f"{found.model_bytes:,} B, input {found.input.describe()}, "
            f"output {found.output.describe()}",
        ),
        ("operators", ", ".join(found.operators) or "none"),
        (
            "runtime",
            f"{board.runtime}: " + ("runs" if found.runs else "does not run (why: the first line)"),
        ),
    ]
    if found.runs:
        rows += [
            (
                "arena",
                f"{_b(m.get('arena_bytes'))} (smallest tensor arena that allocates and "
                "invokes, tflite-micro on this host)",
            ),
            (
                "flash needed",
                f"{_b(m.get('flash_bytes_needed'))} of {board.flash_bytes:,} B: "
                + ("fits" if m.get("fits_flash") else "DOES NOT FIT"),
            ),
            (
                "RAM needed",
                f"{_b(m.get('ram_bytes_needed'))} of {board.ram_bytes:,} B: "
                + ("fits" if m.get("fits_ram") else "DOES NOT FIT")
                + " (model in flash, arena in RAM; code and stack come on top)",
            ),
        ]
    else:
        rows.append(
            (
                "flash needed",
                f"{_b(m.get('flash_bytes_needed'))} of {board.flash_bytes:,} B (the model)",
            )
        )
    if "mcu_instructions" in m:
        parity = "equal" if m.get("mcu_emulated_parity_ok") else "DIFFER from"
        rows += [
            (
                "firmware",
                f"{_b(m.get('firmware_flash_bytes'))} flash, "
                f"{_b(m.get('firmware_ram_bytes'))} RAM (linked {board.cpu} image, "
                "TFLM + CMSIS-NN, arena included)",
            ),
            (
                "instructions",
                f"{int(m['mcu_instructions']):,} per inference (emulated; outputs "
                f"{parity} tflite-micro's)",
            ),
            (
                "latency",
                f"{m['mcu_est_latency_ms']:,.1f} ms = {m['mcu_est_cycles']:,.0f} cycles ÷ "
                f"{board.clock_mhz:g} MHz (an estimate"
                + (f"; {band})" if (band := _band(found)) else ")"),
            ),
            ("estimate basis", found.tags.get("mcu_estimate_basis", "")),
        ]
        if "mcu_est_energy_uj" in m:
            rows.append(
                (
                    "energy",
                    f"{m['mcu_est_energy_uj']:,.0f} µJ = latency × "
                    f"{board.active_power_mw:g} mW ({board.power_source})",
                )
            )
    elif found.emulation_note:
        rows.append(("board estimate", found.emulation_note))
    rows += _other_figures(m)
    if "mcu_accuracy" in m:
        rows.append(("inputs", f"{found.inputs_note}; accuracy on tflite-micro "
                     f"{100 * m['mcu_accuracy']:.2f}%"))  # fmt: skip
    else:
        rows.append(("inputs", f"{found.inputs_note}: no labels, so no accuracy is reported"))
    width = max(len(k) for k, _ in rows)
    return [verdict(found)] + [f"  {k:<{width}}  {v}" for k, v in rows]


# --------------------------------------------------------------------------- MLflow


def check_tracking(cfg) -> None:
    """The store of ``tracking.uri`` is reachable and, if local, under outputs/ (ConfigError)."""
    from sweep.stores.paths import (
        check_inside_outputs,
        check_store_reachable,
        local_store_path,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(cfg.tracking.uri)
    if (store := local_store_path(uri)) is not None:
        check_inside_outputs(store, "tracking.uri", bool(cfg.allow_outside_outputs))
    check_store_reachable(uri)


def record(found: Profile, cfg, bundle_dir: Path | None) -> tuple[str, str]:
    """Log the profile as one top-level MLflow run; return (run id, tracking URI)."""
    from omegaconf import OmegaConf

    from sweep.stores.tracking import ROLE, Tracker, flatten

    check_tracking(cfg)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, bool(cfg.allow_outside_outputs))
    board = found.board
    tags = {
        ROLE: ROLE_PROFILE,
        "target": board.name,
        "profile.model": str(found.path.resolve()),
        "profile.model_sha256": found.sha256,
        "profile.inputs": found.inputs_note,
        "profile.verdict": verdict(found),
        "profile.operators": ",".join(found.operators),
        **found.tags,
    }
    run_id = tracker.start_run(f"profile {found.path.name} on {board.name}", tags)
    try:
        settings = OmegaConf.to_container(cfg.target, resolve=True)
        tracker.log(run_id, params=flatten({"target": settings}), metrics=found.metrics)
        with tempfile.TemporaryDirectory(prefix="sweep-profile-run-") as tmp:
            folder = Path(tmp)
            (folder / found.path.name).write_bytes(found.path.read_bytes())
            summary = {
                "verdict": verdict(found),
                "metrics": found.metrics,
                "tags": found.tags,
                "operators": found.operators,
                "inputs": found.inputs_note,
                "target": settings,
            }
            (folder / "profile.json").write_text(
                strict_json.dumps(summary, indent=1, sort_keys=True)
            )
            paths = sorted(folder.iterdir())
            if bundle_dir is not None and Path(bundle_dir).is_dir():
                paths.append(Path(bundle_dir))
            tracker.log_artifacts(run_id, paths)
    except BaseException as error:
        tracker.fail(run_id, error)
        raise
    tracker.finish(run_id)
    return run_id, tracker.uri


# --------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep-profile",
        description="Profile any .tflite on a microcontroller target: runs? arena, flash and "
        "RAM needed, fits? emulated instructions, estimated latency and energy, operators.",
        epilog="examples: sweep-profile model.tflite target=nano33_ble_sense\n"
        "          sweep-profile model.tflite target=cortex_m4 target.clock_mhz=120 --mlflow",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, help="the .tflite file")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides as in a sweep: target=<board> (required), target.<setting>=..., "
        "dataset=<option> (optional: its test images instead of pseudo-random inputs, and "
        "accuracy), dataset.<setting>=..., tracking.uri=..., tracking.experiment=...",
    )
    parser.add_argument("--mlflow", action="store_true", help="record the profile as an MLflow run")
    parser.add_argument(
        "--images",
        type=int,
        default=1,
        help="pseudo-random inputs to run (default 1; the emulation runs at most "
        "target.emulate_images of them, after one warm-up and one counted invoke)",
    )
    parser.add_argument("--bundle", type=Path, help="keep the firmware bundle in this folder")
    parser.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the tools' log")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # its failures reach the report as reasons; no second copy
        logging.getLogger("sweep.checks.board_emulation").setLevel(logging.CRITICAL)
    try:
        with exits_on_error(lambda line: print(f"error: {line}", file=sys.stderr)):
            found = _profile_command(args)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0 if found.runs and found.fits else 1


def _profile_command(args: argparse.Namespace) -> Profile:
    from sweep.runtimes.isolated import first_step_seconds
    from sweep.settings import ConfigError

    if args.images < 1:
        raise ConfigError(f"--images={args.images} is not valid: expected an integer >= 1.")
    keys = [o.split("=", 1)[0].lstrip("+~") for o in args.overrides]
    if "target" not in keys:
        raise ConfigError(
            f"no board given: add target=<board>, one of {board_names()} "
            "(and target.<setting>=... to change one of its settings)."
        )
    read_model(args.model)  # a file that is no model fails in a second, before any import
    first_step_seconds()  # a bad SWEEP_FIRST_INVOKE_SECONDS: one line before any work
    board, cfg = compose_target(list(args.overrides))
    if args.mlflow:  # an unusable store fails now, not after the emulation
        check_tracking(cfg)
    data = load_dataset(cfg) if any(k.split(".")[0] == "dataset" for k in keys) else None
    found = profile(args.model, board, args.images, args.bundle, data)
    print("\n".join(report_lines(found)), flush=True)
    if args.json:
        print(strict_json.dumps({"metrics": found.metrics, "tags": found.tags}, indent=1))
    if args.mlflow:
        run_id, uri = record(found, cfg, args.bundle)
        from sweep.stores.paths import browse_hint

        print(
            f"recorded as MLflow run {run_id} (experiment {cfg.tracking.experiment!r}); "
            f"browse: {browse_hint(uri)}"
        )
    return found


if __name__ == "__main__":
    sys.exit(main())

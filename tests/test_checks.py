"""Measurement as pluggable checks: a check of one's own, what invalidates cached results,
and one path for a sweep's job and sweep-profile.

The toy check lives only under tests/user_code (one class in toy_checks.py; one setting
names it): nothing in sweep/ knows it, yet its metric is logged, its exclusion reaches
the ranking and its declarations are part of the results cache's key.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers.config import DATA, ROOT, compose, sweep_env
from helpers.preloaded import run_module
from helpers.processes import SAFETY_NET_SECONDS, script_result
from helpers.sweeps import QUICK, run_sweep, runs_by_role, seed_store
from helpers.system import needs_cortex_m

from sweep.metrics import reproducible

USER_CODE = ROOT / "tests" / "user_code"
TOY = "target.checks=[toy_checks.OperatorBudget]"


@pytest.fixture(autouse=True)
def warnings_not_yet_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each old name warns once per process: every test starts as a new process would."""
    from sweep import compat

    monkeypatch.setattr(compat, "_warned", set())


@pytest.fixture
def user_code_on_path(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(USER_CODE))
    yield
    sys.modules.pop("toy_checks", None)


@pytest.mark.slow
def test_a_check_of_ones_own_is_logged_excludes_and_is_ranked(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(USER_CODE), os.environ.get("PYTHONPATH", "")])}
    seed_store(tmp_path)
    result = run_sweep(tmp_path, "quantize=none,int8_fallback", TOY, extra_env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _, children = runs_by_role(tmp_path)
    kinds = {c.data.tags["sequence.quantize"]: c.data.metrics["operator_kinds"] for c in children}
    assert kinds == {"none": 7.0, "int8_fallback": 9.0}  # QUANTIZE and DEQUANTIZE added
    by_quantizer = {c.data.tags["sequence.quantize"]: c for c in children}
    assert by_quantizer["none"].data.tags["target.checks"] == "operator_budget"
    assert "exclusion.operator_budget" not in by_quantizer["none"].data.tags
    reason = "needs 9 operator kinds, over the budget of 8"
    assert by_quantizer["int8_fallback"].data.tags["exclusion.operator_budget"] == reason

    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert ranking["excluded"] == [
        {"sequence": "mnist · cnn · fit · none → int8_fallback", "reason": reason}
    ]
    winners = {e["sequence"] for e in ranking["winners"]["mnist"].values()}
    assert winners == {"mnist · cnn · fit · none → none"}
    assert reason in (tmp_path / "outputs" / "sweep" / "ranking.md").read_text()


def test_the_results_key_holds_the_checks_and_what_they_declare(
    isolated: Path, user_code_on_path
) -> None:
    from sweep.pipeline.components import instantiate_components
    from sweep.pipeline.measurement import result_key

    def key(*overrides: str) -> str:
        return result_key("weights", "data", instantiate_components(compose([*QUICK, *overrides])))

    import toy_checks

    plain, toy = key(), key(TOY)
    assert plain != toy
    toy_checks.OperatorBudget.MAX_KINDS = 3  # what the check declares it depends on
    try:
        assert key(TOY) != toy
    finally:
        toy_checks.OperatorBudget.MAX_KINDS = 8
    assert key(TOY) == toy


_KEY_SCRIPT = """
import sys
from helpers.config import compose
from sweep.pipeline.components import instantiate_components
from sweep.pipeline.measurement import result_key
parts = instantiate_components(compose(["target=cortex_m4"]))
print(result_key("weights", "data", parts))
"""


@pytest.mark.slow
def test_editing_a_measuring_module_misses_the_results_cache(tmp_path: Path) -> None:
    """What invalidates cached results is derived from the code (the import closure of the
    checks and the converter), not a list: an edit to a module the checks import misses,
    an edit to the ranking does not."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copytree(ROOT / "sweep", copy / "sweep", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", copy / "conf")
    before = script_result(_KEY_SCRIPT, tmp_path, copy)
    assert script_result(_KEY_SCRIPT, tmp_path, copy) == before  # deterministic

    ranking = copy / "sweep" / "ranking" / "plot.py"
    ranking.write_text(ranking.read_text() + "\n# a ranking edit measures nothing\n")
    assert script_result(_KEY_SCRIPT, tmp_path, copy) == before

    measuring = copy / "sweep" / "runtimes" / "tensors.py"  # imported by tflm.py, by the check
    measuring.write_text(measuring.read_text().replace("clip(np.round(", "clip(np.rint("))
    after = script_result(_KEY_SCRIPT, tmp_path, copy)
    assert after != before

    firmware = copy / "sweep" / "runtimes" / "cortex_m" / "firmware" / "main.cc"
    firmware.write_text(firmware.read_text() + "\n// the harness compiled into every image\n")
    assert script_result(_KEY_SCRIPT, tmp_path, copy) != after


@needs_cortex_m
@pytest.mark.slow
def test_sweep_profile_and_a_sweep_give_the_same_figures(isolated: Path, tmp_path: Path) -> None:
    """The same model on the same board through a sweep's job and through sweep-profile
    (with the same test images): every figure of the board's checks is identical."""
    from sweep.cli.sweep_profile import compose_target, load_dataset, profile
    from sweep.pipeline.job import run

    board = ["target=cortex_m4", "target.emulate_images=3", "dataset.test_limit=100"]
    outcome = run(compose([*QUICK, "quantize=int8", *board]), out_dir=tmp_path / "job")
    assert outcome.metrics["mcu_emulated"] == 1.0

    target, cfg = compose_target([*board, f"dataset.path={DATA / 'mnist'}"])
    found = profile(tmp_path / "job" / "model.tflite", target, data=load_dataset(cfg))
    from sweep.checks import check_class

    declared = {row.name for name in target.checks for row in check_class(name).rows}
    in_job = reproducible({k: v for k, v in outcome.metrics.items() if k in declared})
    assert in_job == reproducible(found.metrics)
    assert {"mcu_instructions", "arena_bytes", "mcu_accuracy", "firmware_flash_bytes"} <= set(
        in_job
    )


# ---------------------------------------------------------------- boards and old names


BOARDS = [p for p in sorted((ROOT / "conf" / "target").glob("*.yaml")) if p.stem[0] != "_"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_a_board_is_one_yaml_of_at_most_ten_lines(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert len(lines) <= 10, path
    if path.stem != "host":
        assert lines[lines.index(next(x for x in lines if x.startswith("defaults:")))] in (
            f"defaults: [{base}, _self_]"
            for base in (p.stem for p in path.parent.glob("_*.yaml"))  # the per-CPU bases
        )


def test_a_new_board_of_an_emulated_core_is_one_yaml(tmp_path: Path) -> None:
    """The README's example: a board in the user's own config folder composes the package's
    per-CPU base and states only what differs."""
    from sweep.pipeline.components import instantiate_group

    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "my_board.yaml").write_text(
        "defaults: [_cortex_m4f, _self_]\n"
        "name: my_board\nflash_kb: 512\nram_kb: 128\nclock_mhz: 80\n"
        "active_power_mw: 12\npower_source: my datasheet, run mode at 80 MHz\n"
    )
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "target=my_board"])
    board, _ = instantiate_group("target", cfg.target)
    assert (board.name, board.cpu, board.flash_bytes, board.clock_mhz) == (
        "my_board", "cortex-m4f", 512 * 1024, 80
    )  # fmt: skip
    assert board.checks == ["tflite_micro", "cortex_m"]
    assert board.cpi is None  # estimates come from the core's cycle model, in code
    assert board.memory_system is None  # no memory described: the core alone, and it says so


def test_a_new_cortex_m33_board_is_one_yaml_with_its_memory_described(tmp_path: Path) -> None:
    """A board nobody measured: its CPU's base, its sizes and clock, and its memory system
    as the datasheet states it; the estimate borrows a fitted exposure and says so."""
    from sweep.pipeline.components import instantiate_group
    from sweep.runtimes.cortex_m import estimate
    from sweep.runtimes.cortex_m.fit import mixes_for

    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "my_m33.yaml").write_text(
        "defaults: [_cortex_m33, _self_]\n"
        "name: my_m33\nflash_kb: 2048\nram_kb: 768\nclock_mhz: 160\n"
        "memory: {code: flash, weights: flash, wait_states: 4, fetch_bytes: 16,"
        " accelerator: cache, source: my datasheet}\n"
    )
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "target=my_m33"])
    board, _ = instantiate_group("target", cfg.target)
    assert board.cpu == "cortex-m33" and board.memory_system.wait_states == 4
    found = estimate(mixes_for("cortex-m33")["kws"], board.cpu, board.memory_system, 160)
    assert not found.calibrated and "NOT calibrated on this board" in found.basis
    assert found.band_ms[0] < found.ms < found.band_ms[1]


@pytest.mark.parametrize(
    ("memory", "says"),
    [
        ("nowhere", "target.memory='nowhere' is not a described memory system: name one of"),
        ("{code: flash, speed: 3}", "target.memory has unknown keys ['speed']: valid keys are"),
        ("{code: disk, weights: flash, wait_states: 1, fetch_bytes: 8, accelerator: none}",
         "target.memory: memory my_board: code must be one of"),
    ],
)  # fmt: skip
def test_a_bad_memory_description_is_one_line_naming_the_setting(memory: str, says: str) -> None:
    from sweep.pipeline.components import instantiate_components
    from sweep.settings import ConfigError

    with pytest.raises(ConfigError) as error:
        instantiate_components(compose(["target=cortex_m4", f"target.memory={memory}",
                                        "target.name=my_board"]))  # fmt: skip
    assert str(error.value).startswith(says)


def test_an_old_dataset_target_path_still_works_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's dataset YAML from the first release (``_target_: sweep.data.ImageDataset``)."""
    from sweep.pipeline.components import instantiate_group

    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "my_digits.yaml").write_text(
        f"_target_: sweep.data.ImageDataset\nname: my_digits\npath: {DATA / 'mnist'}\n"
    )
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "dataset=my_digits"])
    with caplog.at_level("WARNING", logger="sweep"):
        source, _ = instantiate_group("dataset", cfg.dataset)
        data = source.load()
    assert data.name == "my_digits" and len(data.y_test) == 1000
    assert "sweep.data is deprecated: it moved to sweep.groups.dataset" in caplog.text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("sweep.targets.Microcontroller", "sweep.groups.target.Microcontroller"),
        ("sweep.models.ConvNet", "sweep.groups.model.ConvNet"),
        ("sweep.training.GraphTrainer", "sweep.groups.train.GraphTrainer"),
        ("sweep.pretrain.Pruning", "sweep.groups.pretrain.Pruning"),
        ("sweep.quantize.FullInteger", "sweep.groups.quantize.FullInteger"),
        ("sweep.callbacks.SweepCallback", "sweep.cli.sweep_callback.SweepCallback"),
        ("sweep.job.run", "sweep.pipeline.job.run"),
    ],
)
def test_every_moved_target_path_resolves_to_the_same_object(old: str, new: str) -> None:
    from hydra.utils import get_object

    assert get_object(old) is get_object(new)


def test_a_moved_setting_key_is_accepted_with_a_warning(caplog) -> None:
    from sweep.pipeline.components import instantiate_group

    cfg = compose(["target=cortex_m4", "+target.cpi_source=calibrated by hand"])
    with caplog.at_level("WARNING", logger="sweep"):
        _, settings = instantiate_group("target", cfg.target)
    assert "cpi_source" not in settings
    assert "target.cpi_source is deprecated" in caplog.text


def test_the_old_rank_command_still_runs(tmp_path: Path) -> None:
    done = run_module(
        "sweep.rank_cli", ["--all"], env=sweep_env(tmp_path), cwd=ROOT, timeout=SAFETY_NET_SECONDS
    )
    assert done.returncode == 2  # an empty store: the new command's own answer
    assert "python -m sweep.rank_cli is deprecated: run sweep-rank" in done.stderr
    assert "error: no runs in experiment 'sweep'" in done.stderr


def test_memos_are_forgotten_when_another_sweep_starts() -> None:
    from sweep.pipeline import sequence
    from sweep.stores import memos

    memos.enter_sweep("/a")
    sequence._DATASETS["x"] = ("data", "fingerprint")
    memos.enter_sweep("/a")
    assert "x" in sequence._DATASETS  # the same sweep keeps what it read
    memos.enter_sweep("/b")
    assert sequence._DATASETS == {}

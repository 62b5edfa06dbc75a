"""Composition of every option of every group, and bad settings caught before any work."""

from __future__ import annotations

import pytest
from helpers.config import ROOT, compose
from helpers.processes import script_result

from sweep.errors import UserError
from sweep.groups import GROUPS
from sweep.pipeline.components import instantiate_components
from sweep.settings import ConfigError

OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((ROOT / "conf" / group).glob("*.yaml"))
    if not path.stem.startswith("_")  # a base the options compose (conf/target/_cortex_m4f.yaml)
]


def test_every_group_has_the_options_the_study_needs() -> None:
    """At least the reference study's options; a new option is one YAML and one class and
    is checked by the parametrized tests below without touching this file."""
    found = {group: {o for g, o in OPTIONS if g == group} for group in GROUPS}
    study = {
        "dataset": {"mnist", "fashion_mnist"},
        "model": {"cnn", "separable_cnn"},
        "train": {"fit", "graph"},
        "pretrain": {"none", "pruning", "qat"},
        "quantize": {"none", "dynamic_range", "float16", "int8", "int8_fallback"},
        "target": {"host", "nano33_ble_sense"},
    }
    assert all(study[group] <= found[group] for group in GROUPS), found


INTERFACES = {
    "dataset": "sweep.groups.dataset.DatasetSource",
    "model": "sweep.groups.model.ModelBuilder",
    "train": "sweep.groups.train.Trainer",
    "pretrain": "sweep.groups.pretrain.PretrainOptimizer",
    "quantize": "sweep.groups.quantize.Quantizer",
    "target": "sweep.groups.target.Target",
}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group: str, option: str) -> None:
    from hydra.utils import get_class

    parts = instantiate_components(compose([f"{group}={option}"]))
    assert getattr(parts, group).name == option
    assert isinstance(getattr(parts, group), get_class(INTERFACES[group]))
    label = parts.label
    assert label.count("·") == 3 and "→" in label


def test_paper_experiment_sweeps_120_distinct_sequences() -> None:
    """Count the jobs Hydra's own sweeper makes of the experiment's grid, and compose each."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    grid = compose(["experiment=paper"], with_hydra=True).hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in grid.items()])
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    assert len(jobs) == 2 * 2 * 2 * 3 * 5 == 120
    assert len({tuple(sorted(job)) for job in jobs}) == 120
    quantizers = {o.split("=")[1] for job in jobs for o in job if o.startswith("quantize=")}
    assert quantizers == {"none", "dynamic_range", "float16", "int8", "int8_fallback"}
    labels = {instantiate_components(compose(job)).label for job in jobs[::17]}
    assert len(labels) == len(jobs[::17])


def test_per_run_overrides_reach_the_components() -> None:
    parts = instantiate_components(
        compose(
            [
                "train.epochs=3",
                "pretrain=pruning",
                "pretrain.final_sparsity=0.9",
                "quantize=int8",
                "quantize.calibration_samples=500",
                "dataset.train_limit=2000",
            ]
        )
    )
    assert parts.train.epochs == 3
    assert parts.pretrain.final_sparsity == 0.9
    assert parts.quantize.calibration_samples == 500
    assert parts.dataset.train_limit == 2000


BAD_SETTINGS = [
    (["train.epochs=0"], "train.epochs"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.epochs=abc"], "train.epochs"),
    (["train.learning_rate=-1"], "train.learning_rate"),
    (["+train.epohs=3"], "train.epohs"),
    (["model.filters=0"], "model.filters"),
    (["model.kernel_size=2.5"], "model.kernel_size"),
    (["pretrain=pruning", "pretrain.final_sparsity=1.0"], "pretrain.final_sparsity"),
    (["pretrain=pruning", "pretrain.initial_sparsity=-0.1"], "pretrain.initial_sparsity"),
    (["pretrain=pruning", "pretrain.initial_sparsity=0.9"], "pretrain.final_sparsity"),
    (["pretrain=pruning", "pretrain.fine_tune_epochs=0"], "pretrain.fine_tune_epochs"),
    (["pretrain=qat", "pretrain.fine_tune_epochs=0"], "pretrain.fine_tune_epochs"),
    (["quantize=int8", "quantize.calibration_samples=0"], "quantize.calibration_samples"),
    (["dataset.train_limit=0"], "dataset.train_limit"),
    (["dataset.test_limit=-5"], "dataset.test_limit"),
    (["measure.windows=-1"], "measure.windows"),
    (["measure.window_ms=0"], "measure.window_ms"),
    (["measure.warmup_ms=-1"], "measure.warmup_ms"),
    (["+measure.repeats=3"], "measure.repeats"),
    (["target=nano33_ble_sense", "target.flash_kb=0"], "target.flash_kb"),
    (["target=esp32", "target.runtime=tvm"], "target.runtime"),
    (["model._target_=sweep.groups.model.NoSuchModel"], "model._target_"),
    (["seed=-1"], "seed"),
    (["threads=-2"], "threads"),
    (["threads=many"], "threads"),
    (["rank.max_size_kb=0"], "rank.max_size_kb"),
    (["rank.max_accuracy_drop=-1"], "rank.max_accuracy_drop"),
    (["+rank.max_latency=3"], "rank.max_latency"),
    (["tracking.uri=sqlite:////etc/sweep-mlflow.db"], "tracking.uri"),
    (["allow_outside_outputs=maybe"], "allow_outside_outputs"),
]


@pytest.mark.parametrize(
    ("overrides", "setting"), BAD_SETTINGS, ids=[" ".join(o) for o, _ in BAD_SETTINGS]
)
def test_bad_settings_name_the_setting(overrides: list[str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        instantiate_components(compose(overrides))
    message = str(caught.value)
    assert setting in message, message
    assert "Traceback" not in message


def test_writing_outside_outputs_needs_explicit_permission(isolated) -> None:
    outside = f"sqlite:///{isolated / 'elsewhere' / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="allow_outside_outputs=true"):
        instantiate_components(compose([f"tracking.uri={outside}"]))
    instantiate_components(compose([f"tracking.uri={outside}", "allow_outside_outputs=true"]))
    inside = f"sqlite:///{isolated / 'outputs' / 'other.db'}"
    instantiate_components(compose([f"tracking.uri={inside}"]))


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "1801"])
def test_a_bad_first_invoke_budget_is_refused_before_any_job(
    value: str, isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SWEEP_FIRST_INVOKE_SECONDS is read in the runtimes' children, mid-job: a job checks it
    with its settings, and names the variable and what it may hold."""
    monkeypatch.setenv("SWEEP_FIRST_INVOKE_SECONDS", value)
    with pytest.raises(UserError) as caught:
        instantiate_components(compose([]))
    assert str(caught.value) == (
        f"SWEEP_FIRST_INVOKE_SECONDS={value!r} is not valid: expected seconds above 0 and at "
        "most 1800, or unset for 20"
    )
    monkeypatch.setenv("SWEEP_FIRST_INVOKE_SECONDS", "2.5")
    instantiate_components(compose([]))


_LOADED_BY_CHECKING = """
import sys
import sweep.pipeline.job  # what `python -m sweep` imports before it checks the settings
from helpers.config import compose
from sweep.pipeline.components import instantiate_components
instantiate_components(compose(["target=cortex_m4", "pretrain=qat", "quantize=int8"]))
print(sorted(m for m in ("tensorflow", "tf_keras", "tensorflow_model_optimization")
             if m in sys.modules))
"""


def test_checking_the_settings_loads_no_tensorflow(tmp_path) -> None:
    """TensorFlow loads on first use (sweep.backend): settings are checked, and a bad one
    refused, in about a second, not after TensorFlow's import."""
    assert script_result(_LOADED_BY_CHECKING, tmp_path) == "[]"


@pytest.mark.parametrize(
    ("overrides", "combinations", "composes"),
    [
        # The board search's knobs: 2 kernel sizes x 3 pools x 2 x 2 blocks, one option each.
        (["experiment=board_search", "target=nano33_ble_sense", "dataset.train_limit=600"], 24, 1),
        # Options and settings swept together, a setting added and one deleted for every job.
        (
            [
                *("model=cnn,separable_cnn", "dataset=mnist,fashion_mnist", "model.filters=4,8"),
                *("+model.extra=1", "~train.batch_size"),
            ],
            8,
            4,
        ),
    ],
)
def test_the_data_check_composes_each_variant_as_hydra_does_once_per_option(
    overrides: list[str], combinations: int, composes: int
) -> None:
    """The check before a sweep's first job builds the config of every combination of the
    dataset, model and train values the sweep gives: the same config a compose of each
    gives, for one compose per choice of options (a compose re-reads every YAML file)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from sweep.cli.sweep_callback import VariantComposer, _in_groups, variants
    from sweep.stores.paths import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        sweep = GlobalHydra.instance().hydra.compose_config(
            "config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
        )
        each = variants(sweep, _in_groups("dataset", "model", "train"))
        composer = VariantComposer("config")
        configs = [OmegaConf.to_container(composer.compose(variant)) for variant in each]
        for n in range(0, len(each), 5):  # every fifth: a compose takes ~0.2 s
            expected = OmegaConf.to_container(hydra_compose("config", overrides=each[n]))
            assert configs[n] == expected, each[n]
        assert len({repr(config) for config in configs}) == len(each)  # each one its own
    assert len(each) == combinations
    assert len(composer._composed) == composes

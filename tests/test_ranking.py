"""The ranking on tables of runs whose answer is known by construction."""

from __future__ import annotations

import pytest

from sweep.ranking.rank import BUDGET, rank, render_text
from sweep.ranking.run_records import RunRecord
from sweep.ranking.store import latest_attempts, with_variants
from sweep.run_settings import RankSettings


def record(
    run_id: str,
    pretrain: str,
    quantize: str,
    size: float,
    accuracy: float,
    latency: float,
    status: str = "FINISHED",
    **extra,
) -> RunRecord:
    metrics = {
        "tflite_bytes": size,
        "tflite_gzip_bytes": size * 0.8,
        "tflite_accuracy": accuracy,
        "latency_median_us": latency,
        "latency_p10_us": latency * 0.99,
        "latency_p90_us": latency * 1.01,
        "test_examples": 10_000,
        "keras_bytes": 272_352,
        **extra.pop("metrics", {}),
    }
    return RunRecord(
        run_id,
        {
            "dataset": "mnist",
            "model": "cnn",
            "train": "fit",
            "pretrain": pretrain,
            "quantize": quantize,
        },
        metrics if status == "FINISHED" else {},
        status=status,
        **extra,
    )


TABLE = [
    record("f32", "none", "none", 84_708, 0.980, 12.0),
    record("dr", "none", "dynamic_range", 24_056, 0.981, 11.0),
    record("i8", "none", "int8", 24_384, 0.940, 7.0),
    record("p-i8", "pruning", "int8", 24_384, 0.975, 7.1),
]


def test_winners_and_relative_figures() -> None:
    winners = rank(TABLE, settings=RankSettings(max_accuracy_drop=None)).winners["mnist"]
    assert winners["smallest"]["run_ids"] == ["dr"]
    assert winners["smallest"]["relative"]["size_ratio"] == pytest.approx(84_708 / 24_056)
    assert winners["smallest"]["relative"]["keras_size_ratio"] == pytest.approx(272_352 / 24_056)
    assert winners["fastest"]["run_ids"] == ["i8"]  # no floor: 4 pp worse, but fastest
    # 98.1% vs 98.0% on 10,000 images: inside the noise, reported as a tie.
    assert winners["most_accurate"]["run_ids"] == ["dr"]
    assert "mnist · cnn · fit · none → none" in winners["most_accurate"]["tied_with"]
    assert winners["most_accurate"]["relative"]["accuracy_delta_pp"] == pytest.approx(0.1)


def test_the_accuracy_floor_keeps_broken_models_from_winning() -> None:
    """A sequence at chance accuracy is nobody's smallest or fastest (issue 9's case)."""
    broken = [
        record("chance", "qat", "float16", 8_000, 0.195, 3.0),  # smallest AND fastest, useless
        record("weak", "qat", "none", 9_000, 0.42, 4.0),
    ]
    ranking = rank(TABLE + broken)  # default floor: 1 pp below the best accuracy
    winners = ranking.winners["mnist"]
    assert winners["smallest"]["run_ids"] == ["dr"]
    assert winners["fastest"]["run_ids"] == ["p-i8"]
    assert winners["most_accurate"]["run_ids"] == ["dr"]
    floor = ranking.floors["mnist"]
    assert floor["reference"] == "mnist · cnn · fit · none → dynamic_range"
    assert floor["floor_accuracy"] == pytest.approx(0.971)
    assert floor["below"] == 3  # chance, weak, i8
    below = winners["fastest"]["below_floor"]
    assert below["sequence"] == "mnist · cnn · fit · qat → float16" and below["run_ids"] == [
        "chance"
    ]
    assert below["loss_pp"] == pytest.approx(78.6)
    text = render_text(ranking)
    assert "Accuracy floor 97.10%" in text and "without the floor" in text
    assert ranking.to_dict()["accuracy_floor"]["mnist"]["reference_accuracy"] == 0.981
    lifted = rank(TABLE + broken, settings=RankSettings(max_accuracy_drop=None)).winners["mnist"]
    assert lifted["smallest"]["run_ids"] == ["chance"] and "below_floor" not in lifted["smallest"]


def test_limits_on_any_ranked_metric_combine_with_the_floor() -> None:
    table = [
        *TABLE,
        record("tiny", "qat", "int8", 20_000, 0.978, 9.0, metrics={"latency_median_us": 9.0}),
    ]
    ranking = rank(table, settings=RankSettings(limits={"latency_median_us": 10.0}))
    assert ranking.winners["mnist"][BUDGET]["run_ids"] == ["tiny"]  # i8 is faster, but broken
    assert "latency_median_us <= 10" in render_text(ranking)
    ranking = rank(table, settings=RankSettings(limits={"tflite_accuracy": 0.99}))
    assert BUDGET not in ranking.winners["mnist"]


def test_budget_picks_the_best_accuracy_that_fits() -> None:
    ranking = rank(TABLE, settings=RankSettings(max_size_kb=24.2))
    assert ranking.winners["mnist"][BUDGET]["run_ids"] == ["dr"]
    ranking = rank(TABLE, settings=RankSettings(max_size_kb=30, max_accuracy_drop=0.5))
    assert ranking.winners["mnist"][BUDGET]["run_ids"] == ["dr"]
    without_dr = [r for r in TABLE if r.run_id != "dr"]
    ranking = rank(without_dr, settings=RankSettings(max_size_kb=24.5, max_accuracy_drop=0.5))
    assert ranking.winners["mnist"][BUDGET]["run_ids"] == ["p-i8"]  # i8 loses 4 pp: out
    ranking = rank(TABLE, settings=RankSettings(max_size_kb=20))
    assert BUDGET not in ranking.winners["mnist"]  # nothing is that small
    assert "within budget" in render_text(rank(TABLE, settings=RankSettings(max_size_kb=25)))


def test_microcontroller_ranking_excludes_what_does_not_run_or_fit() -> None:
    mcu = {"mcu_runs": 1.0, "fits_target": 1.0}
    table = [
        record("f32", "none", "none", 84_708, 0.980, 12.0, metrics=mcu, tags={"target": "pico"}),
        record(
            "dr",
            "none",
            "dynamic_range",
            24_056,
            0.981,
            11.0,
            metrics={"mcu_runs": 0.0, "fits_target": 0.0},
            tags={"target": "pico", "mcu_reason": "Input type: FLOAT32 with filter type: INT8"},
        ),
        record("i8", "none", "int8", 24_384, 0.975, 7.0, metrics=mcu, tags={"target": "pico"}),
    ]
    ranking = rank(table)
    assert ranking.target == "pico"
    assert [e["sequence"] for e in ranking.excluded] == ["mnist · cnn · fit · none → dynamic_range"]
    assert "FLOAT32 with filter type: INT8" in ranking.excluded[0]["reason"]
    assert ranking.winners["mnist"]["smallest"]["run_ids"] == ["i8"]
    assert "runs and fits pico" in render_text(ranking)


def test_failed_runs_are_listed_and_a_resumed_attempt_replaces_them() -> None:
    killed = record(
        "old",
        "none",
        "int8",
        0,
        0,
        0,
        status="KILLED",
        tags={"sweep.config_hash": "h-i8"},
        error="interrupted",
    )
    done = record("new", "none", "int8", 24_384, 0.94, 7.0, tags={"sweep.config_hash": "h-i8"})
    broken = record(
        "qat",
        "qat",
        "int8",
        0,
        0,
        0,
        status="FAILED",
        tags={"sweep.config_hash": "h-qat"},
        error="RuntimeError: not supported",
    )
    kept = latest_attempts([killed, done, broken])
    assert [r.run_id for r in kept] == ["new", "qat"]
    ranking = rank(kept)
    assert ranking.failed == [
        {
            "sequence": broken.label,
            "status": "FAILED",
            "error": "RuntimeError: not supported",
            "run_id": "qat",
        }
    ]
    assert "RuntimeError: not supported" in render_text(ranking)


def knobbed(
    run_id: str,
    pretrain: str,
    quantize: str,
    size: float,
    accuracy: float,
    settings: str,
    seed: int = 0,
) -> RunRecord:
    """A run whose command line set ``settings`` (what the job tags as sequence.settings)."""
    return record(
        run_id,
        pretrain,
        quantize,
        size,
        accuracy,
        4.0,
        seed=seed,
        tags={"sequence.settings": settings},
    )


def test_runs_that_differ_in_a_knob_are_not_pooled_as_replicates() -> None:
    shared = "dataset.train_limit=600 model.filters=8"
    table = with_variants(
        [
            knobbed("f8", "none", "none", 40_000, 0.97, shared),
            knobbed("p5", "pruning", "int8", 12_000, 0.96, f"{shared} pretrain.final_sparsity=0.5"),
            knobbed("p9", "pruning", "int8", 12_000, 0.90, f"{shared} pretrain.final_sparsity=0.9"),
            knobbed(
                "p9b",
                "pruning",
                "int8",
                12_000,
                0.91,
                f"{shared} pretrain.final_sparsity=0.9",
                seed=1,
            ),
        ]
    )
    assert table[1].label == (
        "mnist · cnn · fit · pruning → int8 [pretrain.final_sparsity=0.5]"  # shared knobs left out
    )
    ranking = rank(table)
    assert len(ranking.summaries) == 3  # two knob settings, the second with two seeds
    best = ranking.winners["mnist"]["most_accurate"]
    assert best["run_ids"] == ["f8"]
    pruned = next(s for s in ranking.summaries if "0.9" in s.label)
    assert pruned.n_runs == 2
    # The float baseline of a model.filters=8 variant is the float model.filters=8 run.
    widths = with_variants(
        [
            knobbed("f8", "none", "none", 40_000, 0.97, "model.filters=8"),
            knobbed("f16", "none", "none", 80_000, 0.98, "model.filters=16"),
            knobbed("q8", "none", "int8", 10_000, 0.97, "model.filters=8"),
        ]
    )
    entry = rank(widths).winners["mnist"]["smallest"]
    assert entry["run_ids"] == ["q8"]
    assert entry["relative"]["size_ratio"] == pytest.approx(40_000 / 10_000)


def test_infeasible_search_trials_are_excluded_with_their_reason() -> None:
    trial = record(
        "t1",
        "qat",
        "int8",
        6_000,
        0.975,
        5.0,
        metrics={"search.feasible": 0.0},
        tags={"search.reason": "accuracy 97.50% is 0.60 pp below the reference"},
    )
    ranking = rank([*TABLE, trial])
    assert ranking.winners["mnist"]["smallest"]["run_ids"] == ["dr"]
    assert ranking.excluded == [
        {
            "sequence": "mnist · cnn · fit · qat → int8",
            "reason": "search: accuracy 97.50% is 0.60 pp below the reference",
        }
    ]


def test_on_a_board_smallest_is_by_flash_and_fastest_falls_back_to_tflite_micro() -> None:
    """A board's own figures answer the objectives: the flash a model needs (not the file's
    size), the board estimate of latency or, where no model was emulated (no toolchain,
    ``target.emulate=false``), tflite-micro's latency on this host (not the desktop's).
    The tables below order each pair of figures the other way round."""

    def board_run(run_id: str, size: float, latency: float, flash: float, tflm_us: float):
        figures = {"mcu_runs": 1.0, "fits_target": 1.0, "flash_bytes_needed": flash,
                   "ram_bytes_needed": 10_000.0, "mcu_latency_median_us": tflm_us}  # fmt: skip
        return record(run_id, "none", run_id, size, 0.98, latency, metrics=figures,
                      tags={"target": "pico"})  # fmt: skip

    table = [
        board_run("int8", size=30_000, latency=5.0, flash=20_000, tflm_us=900.0),
        board_run("none", size=25_000, latency=9.0, flash=26_000, tflm_us=400.0),
    ]
    winners = rank(table).winners["mnist"]
    assert winners["smallest"]["metric"] == "flash_bytes_needed"
    assert winners["smallest"]["run_ids"] == ["int8"]
    assert winners["fastest"]["metric"] == "mcu_latency_median_us"
    assert winners["fastest"]["run_ids"] == ["none"]
    estimated = [
        board_run("int8", 30_000, 5.0, 20_000, 900.0),
        board_run("none", 25_000, 9.0, 26_000, 400.0),
    ]
    estimated[0].metrics["mcu_est_latency_ms"] = 1.0
    estimated[1].metrics["mcu_est_latency_ms"] = 2.0
    fastest = rank(estimated).winners["mnist"]["fastest"]
    assert fastest["metric"] == "mcu_est_latency_ms" and fastest["run_ids"] == ["int8"]

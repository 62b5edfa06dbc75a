"""Statistics, Pareto front, budgets, plot and reproduction report on hand-made run tables.

Every table here is built so the right answer is known in advance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweep.ranking.pareto import apply_budget, float_baselines, pareto_front
from sweep.ranking.plot import plot_tradeoffs
from sweep.ranking.reproduction import (
    CONTRADICTED,
    MISSING,
    NOISE,
    SUPPORTED,
    check_claims,
    reproduction_report,
)
from sweep.ranking.run_records import RunRecord
from sweep.ranking.stats import (
    mcnemar,
    mean_interval,
    pick_winner,
    summarize,
    t_quantile,
    wilson_interval,
)

_ids = iter(range(10**6))


def rec(seq: str, seed: int = 0, status: str = "FINISHED", **metrics: float) -> RunRecord:
    """``rec("mnist cnn fit none int8", tflite_accuracy=0.9)``."""
    keys = ("dataset", "model", "train", "pretrain", "quantize")
    metrics.setdefault("test_examples", 10_000)
    return RunRecord(
        f"r{next(_ids)}",
        dict(zip(keys, seq.split(), strict=True)),
        metrics,
        status=status,
        seed=seed,
    )


def by_seq(summaries):
    return {" ".join(s.group_key).strip(): s for s in summaries}


# --- intervals and tests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "df, expected", [(1, 12.706), (2, 4.303), (10, 2.228), (30, 2.042), (5000, 1.960)]
)
def test_t_quantile_matches_printed_table(df, expected):
    assert t_quantile(0.95, df) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_matches_scipy():
    import scipy.stats as st  # installed with tensorflow-model-optimization: never skipped

    for df in (1, 3, 4, 7, 25, 31, 200, 999):
        for conf in (0.9, 0.95, 0.99):
            assert t_quantile(conf, df) == pytest.approx(st.t.ppf((1 + conf) / 2, df), rel=1e-7)


def test_wilson_known_value_and_score_test_inversion():
    low, high = wilson_interval(950, 1000)
    assert (low, high) == pytest.approx((0.93469, 0.96187), abs=1e-5)
    # Second method: the Wilson bounds are the p where the score test is exactly
    # significant, i.e. the roots of (p_hat - p)^2 = z^2 p (1 - p) / n.
    z, n, p_hat = 1.959963984540054, 1000, 0.95
    roots = np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat])
    assert sorted(roots) == pytest.approx([low, high], abs=1e-12)


def test_wilson_edges_and_errors():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mean_interval():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert mean_interval([5.0]) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        mean_interval([])


def test_mcnemar_constructed_case():
    # 10 images only A gets right, 3 only B, 50 both: two-sided exact binomial on 13.
    a = np.array([True] * 10 + [False] * 3 + [True] * 50)
    b = np.array([False] * 10 + [True] * 3 + [True] * 50)
    exact = 2 * sum(math.comb(13, i) for i in range(4)) / 2**13
    assert mcnemar(a, b) == pytest.approx(exact) == pytest.approx(0.0922852, abs=1e-7)
    assert mcnemar(a, b, mid_p=True) == pytest.approx(exact - math.comb(13, 3) / 2**13)
    assert mcnemar(a, a) == 1.0
    big_a = np.r_[np.ones(200, bool), np.zeros(9800, bool)]
    assert mcnemar(big_a, np.zeros(10_000, bool)) < 1e-50
    with pytest.raises(ValueError):
        mcnemar(a, b[:-1])


# --- grouping and winners ----------------------------------------------------------------


def test_a_rerun_of_the_same_seed_is_not_a_replicate():
    """Cold and warm runs of one grid (same seed, same model) ranked together: one run,
    the single-run Wilson interval, not "2 seeds" with a zero-width interval."""
    cold = rec("mnist cnn fit none int8", tflite_accuracy=0.9819, test_examples=10_000)
    warm = rec("mnist cnn fit none int8", tflite_accuracy=0.9819, test_examples=10_000)
    alone = by_seq(summarize([cold]))["mnist cnn fit none int8"]
    both = by_seq(summarize([cold, warm]))["mnist cnn fit none int8"]
    assert both.n_runs == 1 and both.seeds == [0]
    assert both.metrics["tflite_accuracy"] == alone.metrics["tflite_accuracy"]
    assert both.metrics["tflite_accuracy"].high - both.metrics["tflite_accuracy"].low > 0.004
    seeds = [rec("mnist cnn fit none int8", seed=s, tflite_accuracy=0.98) for s in (0, 0, 1)]
    assert by_seq(summarize(seeds))["mnist cnn fit none int8"].seeds == [0, 1]


def test_summarize_groups_replicates_and_drops_failed_runs():
    runs = [
        rec("mnist cnn fit none int8", seed=s, tflite_accuracy=acc, tflite_bytes=24_512)
        for s, acc in [(0, 0.97), (1, 0.98), (2, 0.99)]
    ]
    runs += [
        rec(
            "mnist cnn fit none none",
            tflite_accuracy=0.95,
            tflite_bytes=84_848,
            latency_median_us=8.0,
            latency_p10_us=7.5,
            latency_p90_us=9.0,
        ),
        rec("mnist cnn fit none float16", status="FAILED"),
    ]
    s = by_seq(summarize(runs))
    assert set(s) == {"mnist cnn fit none int8", "mnist cnn fit none none"}
    rep = s["mnist cnn fit none int8"]
    assert rep.n_runs == 3 and rep.seeds == [0, 1, 2] and len(rep.run_ids) == 3
    acc = rep.metrics["tflite_accuracy"]
    assert (acc.mean, acc.std, acc.n) == pytest.approx((0.98, 0.01, 3))
    assert (acc.low, acc.high) == pytest.approx(mean_interval([0.97, 0.98, 0.99])[1:])
    size = rep.metrics["tflite_bytes"]
    assert size.low == size.high == 24_512
    one = s["mnist cnn fit none none"]
    assert (
        one.metrics["tflite_accuracy"].low,
        one.metrics["tflite_accuracy"].high,
    ) == pytest.approx(wilson_interval(9500, 10_000))
    lat = one.metrics["latency_median_us"]
    assert (lat.low, lat.mean, lat.high, lat.n) == (7.5, 8.0, 9.0, 1)
    assert math.isnan(lat.std)


@pytest.mark.parametrize("second, tie", [(0.9510, True), (0.9000, False)])
def test_accuracy_tie_on_10000_images(second, tie):
    s = summarize(
        [
            rec("mnist cnn fit none int8", tflite_accuracy=0.9500),
            rec("mnist cnn fit none float16", tflite_accuracy=second),
        ]
    )
    w = pick_winner(s, "tflite_accuracy", higher_is_better=True)
    assert w.best.sequence["quantize"] == ("float16" if second > 0.95 else "int8")
    assert w.is_tie is tie and len(w.tied) == int(tie)


@pytest.mark.parametrize("other, tie", [(24_100, True), (24_200, False)])
def test_size_ties_only_within_half_a_percent(other, tie):
    s = summarize(
        [
            rec("mnist cnn fit none int8", tflite_bytes=24_000),
            rec("mnist cnn fit none dynamic_range", tflite_bytes=other),
        ]
    )
    w = pick_winner(s, "tflite_bytes", higher_is_better=False)
    assert w.best.sequence["quantize"] == "int8" and w.is_tie is tie


def test_latency_ties_by_window_spread():
    s = summarize(
        [
            rec(
                "mnist cnn fit none int8",
                latency_median_us=5.0,
                latency_p10_us=4.9,
                latency_p90_us=5.1,
            ),
            rec(
                "mnist cnn fit none none",
                latency_median_us=5.3,
                latency_p10_us=5.05,
                latency_p90_us=5.6,
            ),
            rec(
                "mnist cnn fit none float16",
                latency_median_us=9.0,
                latency_p10_us=8.8,
                latency_p90_us=9.2,
            ),
        ]
    )
    w = pick_winner(s, "latency_median_us", higher_is_better=False)
    assert w.best.sequence["quantize"] == "int8"
    assert [t.sequence["quantize"] for t in w.tied] == ["none"]
    with pytest.raises(ValueError):
        pick_winner(s, "tflite_accuracy", True)


# --- Pareto front and budgets -----------------------------------------------------------


def _table() -> list[RunRecord]:
    def point(seq, kb, acc, lat=None):
        m = {"tflite_bytes": kb * 1000, "tflite_accuracy": acc}
        if lat is not None:
            m["latency_median_us"] = lat
        return rec(seq, **m)

    return [
        point("mnist cnn fit none dynamic_range", 20, 0.95, 10),  # A: front
        point("mnist cnn fit none none", 30, 0.97, 10),  # B: front (most accurate)
        point("mnist cnn fit none float16", 30, 0.94, 12),  # dominated by A
        point("mnist cnn graph none dynamic_range", 20, 0.95, 10),  # duplicate of A: front
        point("mnist cnn fit pruning dynamic_range", 25, 0.95, 10),  # dominated by A (bigger)
        point("mnist cnn fit none int8", 15, 0.99),  # no latency: cannot be placed
        point("fashion_mnist cnn fit none none", 100, 0.50, 100),  # alone in its dataset
    ]


def test_pareto_front_per_dataset_keeps_duplicates_drops_dominated():
    front = pareto_front(_table())
    labels = [" ".join(r.group_key).strip() for r in front]
    assert labels == [
        "mnist cnn fit none dynamic_range",
        "mnist cnn fit none none",
        "mnist cnn graph none dynamic_range",
        "fashion_mnist cnn fit none none",
    ]
    across = pareto_front(summarize(_table()), group=None)
    assert [s.sequence["dataset"] for s in across] == ["mnist"] * 3


def test_pareto_front_two_objectives():
    front = pareto_front(_table(), [("tflite_bytes", False), ("tflite_accuracy", True)])
    assert {r.sequence["quantize"] for r in front if r.sequence["dataset"] == "mnist"} == {"int8"}


def _budget_table() -> list[RunRecord]:
    return [
        rec("mnist cnn fit none none", tflite_bytes=84_848, tflite_accuracy=0.980),
        rec("mnist cnn fit none int8", tflite_bytes=22_500, tflite_accuracy=0.975),
        rec("mnist cnn fit none dynamic_range", tflite_bytes=22_501, tflite_accuracy=0.960),
        rec("mnist separable_cnn fit none int8", tflite_bytes=20_000, tflite_accuracy=0.97),
    ]


def _quantizers(rows):
    return [(r.sequence["model"], r.sequence["quantize"]) for r in rows]


def test_budget_size_uses_decimal_kilobytes():
    kept = apply_budget(summarize(_budget_table()), max_size_kb=22.5)
    assert _quantizers(kept) == [("cnn", "int8"), ("separable_cnn", "int8")]


def test_budget_accuracy_drop_against_float_baseline_of_same_model_and_train():
    rows = summarize(_budget_table())
    assert float_baselines(rows) == {("mnist", "cnn", "fit", ""): pytest.approx(0.98)}
    kept = apply_budget(rows, max_accuracy_drop_pp=1.0)  # no float separable model: dropped
    assert _quantizers(kept) == [("cnn", "none"), ("cnn", "int8")]
    both = apply_budget(rows, max_size_kb=30, max_accuracy_drop_pp=1.0)
    assert _quantizers(both) == [("cnn", "int8")]
    explicit = {("mnist", "cnn", "fit", ""): 0.98, ("mnist", "separable_cnn", "fit", ""): 0.975}
    assert _quantizers(apply_budget(rows, 30, 1.0, explicit)) == [
        ("cnn", "int8"),
        ("separable_cnn", "int8"),
    ]
    assert _quantizers(apply_budget(rows, None, 2.5, lambda r: 0.985)) == [
        ("cnn", "none"),
        ("cnn", "int8"),
        ("cnn", "dynamic_range"),
        ("separable_cnn", "int8"),
    ]


# --- plot and reproduction report --------------------------------------------------------


def _crimson_pixels(png) -> int:
    """Pixels of the Pareto front's colour (crimson, #DC143C) in a rendered PNG."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(png)[..., :3] * 255).round()
    return int(np.sum(np.all(np.abs(rgb - [220, 20, 60]) <= 12, axis=-1)))


def test_plot_draws_the_pareto_front(tmp_path):
    rows = summarize(_table())
    out = plot_tradeoffs(rows, None, tmp_path / "sub" / "tradeoffs.png", "test sweep")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    none = plot_tradeoffs(rows, set(), tmp_path / "none.png", "nothing on the front")
    one = plot_tradeoffs(rows, {rows[0].group_key}, tmp_path / "one.png", "one on front")
    computed = _crimson_pixels(out)
    assert _crimson_pixels(none) < 50 <= _crimson_pixels(one) < computed


def _paper_grid() -> list[RunRecord]:
    def run(seq, size, acc, lat, seed=0):
        return rec(
            seq,
            seed=seed,
            tflite_bytes=size,
            keras_bytes=272_352,
            tflite_accuracy=acc,
            latency_median_us=lat,
            latency_p10_us=lat * 0.98,
            latency_p90_us=lat * 1.02,
        )

    return [
        run("mnist cnn fit none none", 84_848, 0.9800, 8.0),
        run("mnist cnn graph none none", 84_848, 0.9800, 8.0),
        run("mnist cnn graph none int8_fallback", 22_500, 0.9795, 12.0),  # smallest: a holds
        run("mnist cnn graph none dynamic_range", 24_060, 0.9797, 12.0),  # a′: contradicted
        run("mnist cnn graph none int8", 24_512, 0.9813, 5.0),  # +0.13 pp: noise; fastest
        run("mnist cnn graph none float16", 44_704, 0.9800, 9.0),
        run("mnist separable_cnn fit none float16", 44_000, 0.9750, 7.0),  # c contradicted
        run("fashion_mnist cnn fit none none", 84_848, 0.9000, 8.0),  # partial grid
        rec("fashion_mnist cnn graph none int8", status="FAILED"),
    ]


def test_claim_verdicts_on_constructed_grid():
    checks = {(c.claim[:2], c.dataset, c.claim): c for c in check_claims(_paper_grid())}
    verdicts = {(k[2], k[1]): c.verdict for k, c in checks.items()}
    assert verdicts[("a. smallest model", "mnist")] == SUPPORTED
    assert verdicts[("a′. smallest, as dynamic range", "mnist")] == CONTRADICTED
    assert verdicts[("b. most accurate", "mnist")] == NOISE  # ties with the float models
    assert verdicts[("b. gain over float model", "mnist")] == NOISE
    assert verdicts[("c. fastest inference", "mnist")] == CONTRADICTED
    assert {v for (_, d), v in verdicts.items() if d == "fashion_mnist"} == {MISSING}


def test_replicates_can_support_a_small_gain():
    runs = [
        rec("mnist cnn graph none none", seed=s, tflite_accuracy=a)
        for s, a in enumerate([0.9800, 0.9801, 0.9799])
    ]
    runs += [
        rec("mnist cnn graph none int8", seed=s, tflite_accuracy=a)
        for s, a in enumerate([0.9827, 0.9828, 0.9826])
    ]
    gain = next(c for c in check_claims(runs) if c.claim.startswith("b. gain"))
    assert gain.verdict == SUPPORTED and "+0.27 pp" in gain.measured


def test_report_shows_our_figures_beside_the_claims():
    text = reproduction_report(_paper_grid())
    rows = [line for line in text.splitlines() if line.startswith("| a. smallest model | mnist")]
    assert "22.50 KB" in rows[0] and "12.10×" in rows[0] and SUPPORTED in rows[0]
    assert "cnn · graph · none → int8_fallback" in rows[0]
    assert "+0.13 pp" in text and "98.13" in text and "5.0 [4.9, 5.1] µs" in text
    assert "1 run(s) did not finish" in text and "pretrain `none`, quantize `none`" in text
    assert "| cnn · graph · none → int8 | 1 | 24.51 |" in text
    assert "No finished runs" in reproduction_report([])

"""Whether a trial is a solution: the hard constraints, as Optuna wants them (<= 0 feasible),
with the reason a person reads on the trial's MLflow run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sweep.search.search_settings import SearchSettings


@dataclass
class Verdict:
    constraints: dict[str, float] = field(default_factory=dict)  # name -> value, <= 0 feasible
    reasons: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "meets every constraint"


def judge(
    metrics: Mapping[str, float],
    settings: SearchSettings,
    reference_accuracy: float | None,
    target: str,
    mcu_reason: str = "",
) -> Verdict:
    """The constraints of one trial from the metrics its job logged."""
    verdict = Verdict()
    if settings.require_target:
        runs = metrics.get("mcu_runs", 0.0)
        fits = metrics.get("fits_target", 0.0)
        verdict.constraints["runs_on_target"] = 1.0 - runs
        verdict.constraints["fits_target"] = 1.0 - fits
        if runs < 1:
            why = f" ({mcu_reason})" if mcu_reason else ""
            verdict.reasons.append(f"does not run on {target}'s tflite-micro{why}")
        elif fits < 1:
            flash, ram = metrics.get("fits_flash", 0.0), metrics.get("fits_ram", 0.0)
            parts = [n for n, ok in (("flash", flash), ("RAM", ram)) if ok < 1]
            verdict.reasons.append(f"does not fit {target}'s {' and '.join(parts) or 'memory'}")
    if settings.max_accuracy_drop is not None and reference_accuracy is not None:
        accuracy = metrics.get("tflite_accuracy", 0.0)
        drop = 100 * (reference_accuracy - accuracy)
        verdict.constraints["accuracy_drop"] = drop - settings.max_accuracy_drop
        if drop > settings.max_accuracy_drop:
            verdict.reasons.append(
                f"accuracy {100 * accuracy:.2f}% is {drop:.2f} pp below the reference "
                f"{100 * reference_accuracy:.2f}% (at most {settings.max_accuracy_drop:g} pp)"
            )
    return verdict

"""A measurement check of a user's own: one class here, one YAML line naming it.

``target.checks=[toy_checks.OperatorBudget]`` (or ``checks: [tflite_micro,
toy_checks.OperatorBudget]`` in a board's YAML) adds it to a target: its metric is
logged on every run, a model over its budget is excluded from the ranking with its
reason, and its results are cached under a key that holds its code and its budget.
"""

from __future__ import annotations

from typing import Any

from sweep.checks import Check, Measurement, ModelUnderTest
from sweep.metrics import DETERMINISTIC, Metric
from sweep.runtimes.flatbuffer import operator_names


class OperatorBudget(Check):
    """Counts the operator kinds a model needs; more than ``MAX_KINDS`` keeps it out of the
    ranking (a firmware that must register fewer kernels, say)."""

    name = "operator_budget"
    rows = (Metric("operator_kinds", "", "lower", DETERMINISTIC, "operator kinds the model needs"),)
    MAX_KINDS = 8

    def measure(self, model: ModelUnderTest, target: Any, earlier: Measurement) -> Measurement:
        kinds = operator_names(model.tflite)
        return Measurement({"operator_kinds": float(len(kinds))}, {"operators": ",".join(kinds)})

    def exclusion(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        kinds = metrics.get("operator_kinds", 0)
        if kinds > self.MAX_KINDS:
            return f"needs {kinds:.0f} operator kinds, over the budget of {self.MAX_KINDS}"
        return None

    def cache_material(self, target: Any) -> dict[str, Any]:
        return {"max_kinds": self.MAX_KINDS}

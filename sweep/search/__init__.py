"""A constrained search over a sequence's knobs, driving a current Optuna by ask/tell.

Hydra's own Optuna sweeper pins optuna < 3, which has no constrained multi-objective
samplers; this package is the search behind ``hydra/sweeper=search`` (the shim in
``hydra_plugins/sweep_search`` makes Hydra find it). It launches every trial through
Hydra's launcher, so each trial is one ``python -m sweep`` job and one MLflow child run.
"""

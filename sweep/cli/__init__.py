"""The command-line entry points besides ``python -m sweep``: ``sweep-rank``, ``sweep-profile``,
and the hooks Hydra calls at the start and end of a multirun."""

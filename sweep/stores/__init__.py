"""Where results are kept: the outputs folder, the MLflow store, and the caches of trained
stages and measured results."""

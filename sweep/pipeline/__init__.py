"""The job's pipeline: one sequence from its composed config to its MLflow run (settings
checked, data read, stages trained or reused, converted, measured, logged)."""

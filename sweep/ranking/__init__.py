"""From runs in the store to the answer: records, statistics, Pareto front, ranking, reports."""

"""The job-by-job garbage policy: frozen survivors are freed by the periodic collection."""

from __future__ import annotations

import gc
import weakref

from sweep.pipeline import heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_frozen_cycle_is_freed_by_the_collection_every_n_jobs() -> None:
    heap._jobs_since_collection = 0
    try:
        garbage = _Cycle()
        alive = weakref.ref(garbage)
        heap.settle_before_job()  # job 1 starts: the cycle is frozen with the rest
        del garbage
        gc.collect()
        assert alive() is not None  # frozen: out of reach of the collector
        for _ in range(heap.JOBS_PER_COLLECTION - 1):
            heap.settle_before_job()
        assert alive() is None  # the periodic full collection freed it
        assert gc.get_freeze_count() > 0  # and the heap is frozen again for the next job
    finally:
        gc.unfreeze()

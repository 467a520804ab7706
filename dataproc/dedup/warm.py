"""Load the dedup kernels in this process (numba's on-disk cache, or a compile the first time).

Called before a step's local workers are forked (:func:`dataproc.execution.execute`): they then
start with every kernel loaded, instead of each loading ~1 s of compiled code per step.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def warm_up(keyer: object) -> None:
    """Run each kernel a dedup step may call once, on a tiny input."""
    from dataproc.dedup.buckets import gather_runs
    from dataproc.dedup.clusters import connected_components
    from dataproc.dedup.verify import bucket_order, exact_jaccard_pairs, greedy_keep, verify_buckets
    from dataproc.shards import _validate

    texts = pa.array(["a tiny warm up text of a few words", "a tiny warm up text of some words", "", None])
    batch = pa.RecordBatch.from_arrays([texts, pa.array(["a", "b", "c", "d"])], ["text", "id"])
    _validate(batch, "warm-up", "warm-up", 0, "text", "id", 1 << 20)
    good = batch.slice(0, 2)
    if hasattr(keyer, "sketch"):
        keys, _, sigs, csr = keyer.sketch(good, sets=bool(getattr(keyer, "needs_sets", False)))
        keyer.sketch(good)
        k, d, _ = bucket_order(keys[:, 0], np.arange(2, dtype=np.int64))
        verify_buckets(k, d, np.arange(len(d)), sigs, 0, keyer.rows, keyer.threshold, keyer.max_checks,
                       keyer.verify)
        if csr is not None:
            exact_jaccard_pairs(csr[0], csr[1], np.array([0]), np.array([1]))
    else:
        keyer.keys(good)
    # The buckets step gathers shingle sets from read-only memory maps: a type of its own to numba.
    sets = np.arange(4, dtype=np.uint32)
    sets.flags.writeable = False
    gather_runs(sets, np.array([0]), np.array([2]))
    connected_components(np.array([[2, 1]], np.int64))
    # Two edges: the columns of a one-row array are contiguous, of a longer one strided.
    greedy_keep(np.array([[2, 1, 1], [3, 1, 1]], np.int64))

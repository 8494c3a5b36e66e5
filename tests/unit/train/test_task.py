"""The trial's data split over ranks."""

import pytest

from qstudy.config import TrialConfig
from qstudy.train._task import build_task


def _task(eval_examples: int, micro_batch_size: int):
    trial = TrialConfig.model_validate({
        "data": {"task": "classification", "train_examples": 16, "eval_examples": eval_examples},
        "train": {"global_batch_size": micro_batch_size, "micro_batch_size": micro_batch_size},
    })  # fmt: skip
    return build_task(trial)


@pytest.mark.parametrize("n, micro, world", [(3, 1, 2), (5, 2, 2), (7, 2, 4), (2, 1, 4), (8, 4, 2), (1, 3, 1)])
def test_every_rank_runs_the_same_number_of_eval_batches_and_counts_each_example_once(n, micro, world):
    """Multi-rank ZeRO-3 forwards are collective: a rank with fewer eval batches would
    leave the others waiting for good, so short shares are padded with uncounted batches."""
    task = _task(n, micro)
    counts, seen = set(), []
    for rank in range(world):
        batches = list(task.eval_batches(rank, world))
        counts.add(len(batches))
        for batch, counted in batches:
            assert 1 <= batch["input_ids"].shape[0] <= micro
            if counted:
                seen.extend(batch["labels"].tolist())
    assert len(counts) == 1
    assert sorted(seen) == sorted(task.eval["labels"].tolist())
    assert len(seen) == n

"""The trial's data split over ranks."""

import pytest

from qstudy.config import TrialConfig
from qstudy.train import build_trial_data


def _task(eval_examples: int, micro_batch_size: int):
    trial = TrialConfig.model_validate({
        "data": {"task": "classification", "train_examples": 16, "eval_examples": eval_examples},
        "train": {"global_batch_size": micro_batch_size, "micro_batch_size": micro_batch_size},
    })  # fmt: skip
    return build_trial_data(trial)


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


def _gsm8k_task(micro_batch_size: int):
    trial = TrialConfig.model_validate({
        "data": {"task": "synthetic_gsm8k", "train_examples": 16, "eval_examples": 12, "generate_examples": 0, "max_tokens": 160},
        "train": {"global_batch_size": 8, "micro_batch_size": micro_batch_size},
    })  # fmt: skip
    return trial, build_trial_data(trial)


def test_eval_loss_is_the_mean_over_scored_tokens_for_any_split():
    """The same weights give the same eval_loss for any micro-batch size and worker count:
    the sum of the token losses over the number of scored tokens."""
    import torch

    from qstudy.models import build_model
    from qstudy.train._worker import eval_sums

    losses = {}
    for micro in (2, 8):
        trial, task = _gsm8k_task(micro)
        torch.manual_seed(0)
        model = build_model(trial, task).eval()
        for world in (1, 2):
            sums = [
                sum(column)
                for column in zip(*(eval_sums(model, task, r, world, torch.device("cpu")) for r in range(world)))
            ]
            losses[micro, world] = sums[0] / sums[1]
    # the same mean computed directly from all held-out tokens at once
    with torch.no_grad():
        logits = model(input_ids=task.eval["input_ids"], attention_mask=task.eval["attention_mask"]).logits
    labels = task.eval["labels"][:, 1:]
    direct = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
    )
    for value in losses.values():
        assert value == pytest.approx(float(direct), rel=1e-5)

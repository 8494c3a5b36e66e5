"""The trial's data split over ranks."""

import pytest
import torch

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


def _gsm8k_trial(tmp_path, **data):
    from qstudy.data import save_gsm8k_jsonl, synthesize_gsm8k

    train_path = save_gsm8k_jsonl(synthesize_gsm8k(40, seed=3), tmp_path / "train.jsonl")
    return TrialConfig.model_validate({
        "data": {"task": "gsm8k", "train_path": str(train_path), "eval_examples": 6, "generate_examples": 3, "max_tokens": 192, **data},
    })  # fmt: skip


def _assert_same_data(a, b):
    for split in ("train", "eval"):
        assert a.__dict__[split].keys() == b.__dict__[split].keys()
        for key in a.__dict__[split]:
            assert torch.equal(a.__dict__[split][key], b.__dict__[split][key]), (split, key)
    assert a.problems == b.problems
    fields = ("kind", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "micro_batch_size", "accumulation")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


@pytest.mark.parametrize("task", ["synthetic_gsm8k", "gsm8k"])
def test_cached_data_is_the_data_built_without_the_cache(tmp_path, monkeypatch, task):
    """A trial reading another's tokenized data gets exactly the tensors it would build,
    and does not tokenize."""
    import qstudy.data

    if task == "gsm8k":
        trial = _gsm8k_trial(tmp_path)
    else:
        trial = TrialConfig.model_validate(
            {"data": {"task": task, "train_examples": 24, "eval_examples": 5, "max_tokens": 192}}
        )
    fresh = build_trial_data(trial)
    first = build_trial_data(trial, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(qstudy.data, "encode_gsm8k", no_tokenizing)
    second = build_trial_data(trial, cache_dir=tmp_path / "cache")
    _assert_same_data(fresh, first)
    _assert_same_data(fresh, second)
    assert fresh.train["input_ids"].shape[0] > 0 and len(fresh.problems) > 0


def test_changed_data_settings_or_files_are_new_cache_entries(tmp_path):
    cache = tmp_path / "cache"
    trial = _gsm8k_trial(tmp_path)
    build_trial_data(trial, cache_dir=cache)
    shorter = build_trial_data(_gsm8k_trial(tmp_path, max_tokens=160), cache_dir=cache)
    assert shorter.train["input_ids"].shape[1] == 160
    assert len(list(cache.iterdir())) == 2
    from qstudy.data import save_gsm8k_jsonl, synthesize_gsm8k

    save_gsm8k_jsonl(synthesize_gsm8k(40, seed=4), tmp_path / "train.jsonl")  # same path, other problems
    changed = build_trial_data(trial, cache_dir=cache)
    _assert_same_data(changed, build_trial_data(trial))
    assert len(list(cache.iterdir())) == 3

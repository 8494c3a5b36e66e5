"""Pieces of the per-worker loop that need no Ray cluster."""


def test_learning_rate_warms_up_then_holds_or_decays_linearly_to_zero():
    import pytest

    from qstudy.config import TrialConfig
    from qstudy.train._worker import learning_rate

    def lrs(**optimizer):
        trial = TrialConfig.model_validate({"optimizer": {"lr": 1.0, **optimizer}, "train": {"max_steps": 10}})
        return [learning_rate(trial, step) for step in range(1, 11)]

    assert lrs() == [1.0] * 10
    assert lrs(warmup_steps=4) == [0.25, 0.5, 0.75] + [1.0] * 7
    # transformers' get_linear_schedule_with_warmup over 10 steps, 1-based: 1/w, ..., 1, then (T - s + 1)/(T - w)
    assert lrs(warmup_steps=2, lr_schedule="linear") == pytest.approx(
        [0.5, 1.0, *[(10 - s + 1) / 8 for s in range(3, 11)]]
    )
    assert lrs(lr_schedule="linear")[0] == 1.0 and lrs(lr_schedule="linear")[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrialConfig.model_validate({"optimizer": {"lr_schedule": "cosine"}})

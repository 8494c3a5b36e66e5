"""compile_pays_off: compile where the run is long or large enough to earn the compile back."""

import pytest

import qstudy.optim._compile_payoff as payoff
from qstudy.config import TrialConfig
from qstudy.optim import compile_pays_off


@pytest.mark.parametrize(
    ("response", "saved", "compile_s"),
    [
        ("sin", payoff.SIN_SAVED_S_PER_ELEMENT, payoff.SIN_WARM_COMPILE_S),
        ("circuit", payoff.CIRCUIT_SAVED_S_PER_ELEMENT, payoff.CIRCUIT_WARM_COMPILE_S),
    ],
)
def test_compiles_exactly_when_the_saving_exceeds_the_warm_compile(response, saved, compile_s):
    kw = dict(response=response, scope="all", circuit_depth=2)
    numel = 1_000_000
    break_even = compile_s / (numel * saved)  # steps at which the saving equals the compile
    assert not compile_pays_off(numel, int(break_even * 0.99), **kw)
    assert compile_pays_off(numel, int(break_even * 1.01) + 1, **kw)
    # elements and steps trade one for one
    assert compile_pays_off(numel * 100, max(1, int(break_even * 0.99) // 100 + 1), **kw)


def test_tiny_trials_step_eagerly_and_large_models_compile():
    # llama-tiny (~1e5 trainable elements) for the ablation's 320 steps: sin saves at most
    # ~0.3 s against a compile of seconds, the circuit kernel ~13-25 s
    assert not compile_pays_off(100_000, 320, response="sin", scope="all")
    assert compile_pays_off(100_000, 320, response="circuit", scope="all", circuit_depth=2)
    # 1M elements for 200 steps: still eager; 100M elements for 20 steps, a 1B model for one epoch: compiled
    assert not compile_pays_off(1_000_000, 200, response="sin", scope="all")
    assert compile_pays_off(100_000_000, 20, response="sin", scope="all")
    assert compile_pays_off(1_200_000_000, 234, response="sin", scope="all")


@pytest.mark.parametrize(
    "kw",
    [
        dict(response="sin", scope="leading"),
        dict(response="circuit", scope="leading", circuit_depth=2),
        dict(response="circuit", scope="all", circuit_depth=0),
        dict(response="gaussian", scope="all"),
        dict(response="none", scope="all"),
    ],
)
def test_configurations_that_compile_nothing_keep_the_default(kw):
    assert compile_pays_off(10, 1, **kw) is True


def test_takes_a_trial_configs_optimizer_arguments_whole():
    trial = TrialConfig.model_validate({"optimizer": {"scope": "all"}})
    kwargs = trial.optimizer.optimizer_kwargs()
    assert compile_pays_off(10, 1, **kwargs) is False
    assert compile_pays_off(10**9, 1000, **kwargs) is True


def test_rejects_unknown_arguments_and_negative_sizes():
    with pytest.raises(TypeError, match=r"does not take: \['respons'\]"):
        compile_pays_off(10, 1, respons="sin")
    with pytest.raises(ValueError, match="numel and steps must be >= 0, got numel=-1, steps=3"):
        compile_pays_off(-1, 3)

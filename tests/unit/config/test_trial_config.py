"""Trial config: defaults, every problem reported at once with file, key and value."""

import textwrap

import pytest

from qstudy.config import ConfigError, TrialConfig, load_trial_config
from qstudy.train import check_paths


def _write(tmp_path, text):
    path = tmp_path / "trial.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_valid_and_named_as_the_optimizer():
    import inspect

    from qstudy.optim import SuperpositionalAdamW

    trial = TrialConfig()
    args = set(inspect.signature(SuperpositionalAdamW).parameters) - {"params", "fused", "compile_step"}
    assert args <= set(trial.optimizer.model_dump())
    assert trial.gradient_accumulation_steps == 2


def test_every_problem_is_listed_with_file_key_and_value(tmp_path):
    path = _write(
        tmp_path,
        """
        model: {preset: llama-9b, colour: red}
        deepspeed: {preset: zero4}
        optimizer: {quantum_weight: -1, lr: abc}
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, check_paths=check_paths)
    lines = err.value.problems
    assert (
        f"{path}: model.preset: input should be 'llama-tiny', 'llama-3.2-1b', 'llama-3.2-3b', 'llama-3.1-8b' or 'llama-3.1-70b', got 'llama-9b'"
        in lines
    )
    assert f"{path}: model.colour: unknown key; allowed keys here: preset, path, num_hidden_layers, dtype" in lines
    assert any(
        line.startswith(f"{path}: deepspeed.preset: input should be 'zero0'") and line.endswith("got 'zero4'")
        for line in lines
    )
    assert f"{path}: optimizer.quantum_weight: input should be greater than or equal to 0, got -1" in lines
    assert any(line.startswith(f"{path}: optimizer.lr: input should be a valid number") for line in lines)
    assert len(lines) == 5


def test_batch_must_divide_over_workers(tmp_path):
    path = _write(tmp_path, "train: {global_batch_size: 6, micro_batch_size: 2}\nresources: {num_workers: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, check_paths=check_paths)
    assert str(err.value) == (
        f"{path}: train.global_batch_size: must be a multiple of train.micro_batch_size x resources.num_workers "
        "= 2 x 2 = 4, got 6"
    )


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_trial_config(tmp_path / "nope.yaml", check_paths=check_paths)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_trial_config(bad, check_paths=check_paths)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: must be a mapping of keys to values, got list"):
        load_trial_config(listy, check_paths=check_paths)


def test_depth_override_does_not_apply_to_a_checkpoint(tmp_path):
    path = _write(tmp_path, "model: {path: /ckpt, num_hidden_layers: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, check_paths=None)
    assert str(err.value) == (
        f"{path}: model.num_hidden_layers: overrides a preset's depth; it cannot apply to a checkpoint loaded "
        "from model.path, got num_hidden_layers=2 with path='/ckpt'"
    )

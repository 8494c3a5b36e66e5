"""The memory planner: exact parameter counts, DeepSpeed's estimators, fit decisions, the CLI.

The decisions asserted here are the planner's documented numbers (GiB per GPU, bf16,
micro-batch x tokens as given), e.g. 70B with zero3 on 8 GPUs needs ~185 GiB per GPU.
"""

from pathlib import Path

import math

import pytest

from qstudy.cli import main
from qstudy.config import ModelConfig, QuantumConfig, StudyConfig, TrialConfig, load_study_config
from qstudy.plan import GIB, check_fits, check_fits_on_ray, count_parameters, estimate_memory, plan_study

SEARCH_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def _trial(preset, deepspeed, gpus, micro_batch=1, max_tokens=512, quantum=True, **quantum_kwargs) -> TrialConfig:
    return TrialConfig.model_validate({
        "model": {"preset": preset},
        "quantum": {"enabled": quantum, **quantum_kwargs},
        "deepspeed": {"preset": deepspeed},
        "resources": {"num_workers": gpus, "use_gpu": True},
        "train": {"micro_batch_size": micro_batch, "global_batch_size": micro_batch * gpus},
        "data": {"max_tokens": max_tokens},
    })


def _study(trial: TrialConfig, **extra) -> StudyConfig:
    return StudyConfig.model_validate({
        "name": "planned", "num_samples": 2,
        "space": {"optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 1.0}},
        "baselines": [{"optimizer.quantum_weight": 0.0}],
        "trial": trial.model_dump(), **extra,
    })


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

    from qstudy._llama_presets import llama_config_kwargs
    from qstudy.models import install_quantum_attention

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
    "Measured GPU memory"): the scaling file's trial, 512 tokens, 4 qubits, depth 2."""
    estimate = estimate_memory(_trial(preset, "zero3", 1, micro_batch=micro_batch, n_qubits=4, circuit_depth=2))
    assert estimate.optimizer_step_gib * GIB == math.ceil(4 * estimate.params)
    assert 0.99 * measured_gib <= estimate.total_gib <= 1.06 * measured_gib


def test_more_gpus_less_memory_per_gpu_under_zero3():
    totals = [estimate_memory(_trial("llama-3.1-70b", "zero3", n)).total_gib for n in (8, 16, 32, 64)]
    assert totals == sorted(totals, reverse=True) and totals[0] > 2 * totals[-1]
    zero0 = {estimate_memory(_trial("llama-3.2-1b", "zero0", n)).model_states_gib for n in (1, 8)}
    assert len(zero0) == 1  # zero0 partitions nothing
    zero0, zero1, zero2 = (estimate_memory(_trial("llama-3.2-1b", ds, 8)).model_states_gib for ds in ("zero0", "zero1", "zero2"))
    assert zero0 > zero1 > zero2


def test_check_fits_names_the_trial_and_what_to_do():
    study = _study(_trial("llama-3.1-70b", "zero2", 8))
    [line] = check_fits(study, gpus_per_node=8, gpu_memory_gib=80, source="big.yaml")
    assert line.startswith("big.yaml: trial: llama-3.1-70b needs 312.8 GiB per GPU with zero2 on 8 GPUs (")
    assert line.endswith("more than 80 GiB (90% of it usable): use zero3 or zero3_offload or more GPUs (resources.num_workers)")
    assert check_fits(_study(_trial("llama-3.1-70b", "zero3_offload", 8)), 8, 80) == []


def test_check_fits_checks_searched_presets_and_placement():
    space = {
        "optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 1.0},
        "model.preset": {"type": "categorical", "choices": ["llama-3.2-1b", "llama-3.1-70b"]},
    }
    study = _study(_trial("llama-3.2-1b", "zero3", 8), space=space, num_samples=4)
    # One line per shape: the baseline leaves model.preset to the space, so it adds none.
    [line] = check_fits(study, 8, 80)
    assert line.startswith("space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 185.2 GiB per GPU with zero3 on 8 GPUs")
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
    assert check_fits(load_study_config(SEARCH_SPACES / "smoke.yaml"), 8, 1) == []


def test_scaling_study_fits_one_node_per_trial():
    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=False)
    rows = plan_study(study, gpus_per_node=8, gpu_memory_gib=80, nodes=1)
    assert [row.trial.model.preset for row in rows] == ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b"]
    assert all(row.estimate.fits and row.estimate.gpus == 8 for row in rows)
    assert check_fits(study, 8, 80, nodes=1) == []
    assert check_fits(study, 8, 24, nodes=1)  # 70B's activations alone outgrow a 24 GiB GPU


def test_cli_prints_the_table(capsys, tmp_path):
    assert main(["plan", str(SEARCH_SPACES / "scaling_llama.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "8 GPUs x 80 GiB (90% usable)" in out[0]
    assert out[1].split()[:3] == ["where", "preset", "layers"]
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

    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=False)
    cpu_only = [{"Alive": True, "Resources": {"CPU": 2.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: cpu_only)
    assert check_fits_on_ray(study, "s.yaml") == []  # no GPU: a local run, not checked (and no probe)
    gpu_nodes = [{"Alive": True, "Resources": {"CPU": 64.0, "GPU": 8.0}}, {"Alive": False, "Resources": {"GPU": 16.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: gpu_nodes)
    assert check_fits_on_ray(study, "s.yaml", gpu_memory_gib=80) == []
    [line] = check_fits_on_ray(study, "s.yaml", gpu_memory_gib=24)
    assert line.startswith("s.yaml: space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 37.4 GiB per GPU "
                           "with zero3_offload on 8 GPUs")
    assert "more than 24 GiB (90% of it usable): use more GPUs" in line


def test_host_memory_is_checked_for_offload_presets_only():
    offload = _trial("llama-3.1-70b", "zero3_offload", 8)
    p4d = estimate_memory(offload, gpu_memory_gib=80, cpu_memory_gib=1152)
    assert p4d.cpu_gib_per_node == pytest.approx(p4d.params * 18 * 1.5 / GIB)  # DeepSpeed's estimate, 1 node
    assert p4d.total_gib <= p4d.usable_gib and p4d.host_fits is False and p4d.fits is False
    p5 = estimate_memory(offload, gpu_memory_gib=80, cpu_memory_gib=2048)
    assert p5.host_fits is True and p5.fits is True
    # Over two nodes (16 GPUs) each holds half the offloaded states.
    assert estimate_memory(_trial("llama-3.1-70b", "zero3_offload", 16), gpu_memory_gib=80, cpu_memory_gib=1152).fits is True
    not_offloaded = estimate_memory(_trial("llama-3.2-1b", "zero2", 8), gpu_memory_gib=80, cpu_memory_gib=1)
    assert not_offloaded.host_fits is None and not_offloaded.fits is True
    assert estimate_memory(offload, gpu_memory_gib=80).host_fits is None  # host memory not given


def test_check_fits_names_the_host_memory_problem(monkeypatch, capsys):
    import ray

    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=False)
    [line] = check_fits(study, 8, 80, nodes=1, source="s.yaml", cpu_memory_gib=1152)
    assert line.startswith("s.yaml: space (model.preset='llama-3.1-70b'): llama-3.1-70b needs 1774 GiB of host memory "
                           "per node with zero3_offload on 8 GPUs")
    assert "more than the 1152 GiB a node has: spread the trial over more nodes" in line
    assert check_fits(study, 8, 80, nodes=1, cpu_memory_gib=2048) == []
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"GPU": 8.0}}])
    assert check_fits_on_ray(study, "s.yaml", gpu_memory_gib=80, cpu_memory_gib=1152) == [line]
    assert main(["plan", str(SEARCH_SPACES / "scaling_llama.yaml"), "--cpu-memory-gib", "1152"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "1152 GiB host memory" in out[0]
    assert next(line for line in out if "llama-3.1-70b" in line).split()[-3:] == ["no", "(host)", "1774"]

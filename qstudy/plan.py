"""The memory planner: per-GPU memory of a trial before launch, and whether it fits.

`qstudy plan FILE` prints one row per distinct trial shape of a study; `check_fits` gives
the same decision as ConfigError lines, so `qstudy sweep` refuses a study before any Ray
resource is taken. Sizes assume bf16 (the GPU default, ``model.dtype: auto``) and no
activation recomputation; P parameters on N GPUs (``resources.num_workers``).

Per GPU: model states + max(optimizer step, activations), as the step runs after the
backward has freed the activations. It fits when that is at most ``USABLE_FRACTION`` of
the GPU: the rest is headroom for what no term counts (CUDA context, NCCL buffers,
allocator fragmentation, DeepSpeed's communication buckets).

- Model states: DeepSpeed's own estimators for ZeRO-2 and ZeRO-3 (zero_init, the largest
  module gathered). ZeRO-0 and 1 have none; they get the same byte accounting, 2P bf16
  params + 2P bf16 grads + 16P fp32 state (grads, master weights, Adam m and v), of
  which ZeRO-1 partitions the 16P.
- Activations per decoder layer: ``34·s·b·h`` (Korthikanti et al. 2022, arXiv 2205.05198,
  without the [b, a, s, s] scores SDPA never stores); a quantum-attention layer keeps
  them, ``18·b·a·s²`` (four fp32 tensors and one bf16 per score: an estimate of what
  autograd keeps); the output layer ``6·b·s·V`` (bf16 logits and the loss's fp32 copy).
- ZeRO-3's optimizer step adds an fp32 buffer DeepSpeed's estimate leaves out, 4 bytes
  per element of the largest sub-group it steps at once (`largest_zero3_sub_group`):
  the whole partition, 4P/N, where ``deepspeed_config`` keeps one sub-group per group.
- Host memory per node: DeepSpeed's estimate, checked (``cpu_memory_gib``) only for the
  offload presets, where the host holds the optimizer state (and zero3_offload's params).
  For the others it is the memory to load an fp32 model on every local rank, which
  ZeRO-3's partitioned build avoids: printed, not checked.

Shapes come from `qstudy.models.llama_config_kwargs` (a preset) or a checkpoint's
``config.json``; the ZeRO stage and sub-groups from `qstudy.train.deepspeed_config`, the
config the trial runs with. The measurements the terms were checked against, and what
was never measured: benchmarks/RESULTS.md, "Planner: per-GPU memory model and the
measurements it is fitted to". torch, transformers and deepspeed are imported inside
the functions that need them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "USABLE_FRACTION",
    "MemoryEstimate",
    "PlanRow",
    "check_fits",
    "check_fits_on_ray",
    "count_parameters",
    "estimate_memory",
    "format_plan",
    "largest_zero3_sub_group",
    "plan_study",
]

logger = logging.getLogger(__name__)

GIB = 2**30
# Share of a GPU's memory the planner lets a trial use; the rest is headroom (module docstring).
USABLE_FRACTION = 0.9
# Trial settings that change memory; any other searched key (λ, lr, seed, ...) does not.
SHAPE_KEYS = (
    "model.preset",
    "model.path",
    "model.num_hidden_layers",
    "deepspeed.preset",
    "resources.num_workers",
    "resources.use_gpu",
    "train.micro_batch_size",
    "data.max_tokens",
    "quantum.enabled",
    "quantum.layers",
    "optimizer.response",  # with optimizer.scope: ZeRO-3's sub-groups, so its optimizer step
    "optimizer.scope",
)  # quantum.n_qubits / circuit_depth add 2·depth·qubits parameters per layer: not a shape


# ------------------------------------------------------------------------- parameters


# LlamaConfig arguments that change the parameters' shapes; the rest of a checkpoint's
# config.json (rope, dtype, token ids, saved quantum options) changes no size.
_SHAPE_ARGUMENTS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
)
# Without these a checkpoint's size is unknown (LlamaConfig would fill in a 7B default).
_REQUIRED_ARGUMENTS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _checkpoint_architecture(path: str) -> dict[str, Any]:
    """The shape arguments in a local checkpoint's ``config.json``.

    Raises:
        ConfigError: the file is missing, unreadable, not a Llama config, or lacks a size.
    """
    from qstudy.config import ConfigError

    config_file = Path(path) / "config.json"
    try:
        values = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            [f"model.path: cannot read the checkpoint's architecture from {config_file}: {err}"]
        ) from None
    if not isinstance(values, dict):
        raise ConfigError([f"model.path: {config_file} must hold a JSON object, got {type(values).__name__}"])
    if values.get("model_type", "llama") != "llama":
        raise ConfigError(
            [
                f"model.path: must be a Llama checkpoint (model_type 'llama'), "
                f"got model_type {values['model_type']!r} in {config_file}"
            ]
        )
    missing = [key for key in _REQUIRED_ARGUMENTS if not isinstance(values.get(key), int)]
    if missing:
        raise ConfigError(
            [
                f"model.path: {config_file} has no integer {', '.join(missing)}: the model's size is unknown; "
                f"a Llama config.json sets {', '.join(_REQUIRED_ARGUMENTS)}"
            ]
        )
    return {key: values[key] for key in _SHAPE_ARGUMENTS if values.get(key) is not None}


def _architecture(model_config) -> dict[str, Any]:
    """The LlamaConfig arguments of a ``ModelConfig``: a checkpoint's ``config.json``
    (``path``), else the preset with its depth override."""
    if model_config.path is not None:
        return _checkpoint_architecture(model_config.path)
    from qstudy.models import llama_config_kwargs

    return llama_config_kwargs(model_config.preset, model_config.num_hidden_layers)


def _model_sizes(model_config) -> tuple[tuple[int, ...], int]:
    return _meta_sizes(json.dumps(_architecture(model_config), sort_keys=True))


@functools.cache
def _meta_sizes(architecture: str) -> tuple[tuple[int, ...], int]:
    """(numel of every parameter in model order, parameters of the largest module) of
    the LlamaConfig arguments ``architecture`` (JSON), built on the meta device.

    Nothing is allocated: a 70B model builds in about a second. Tied embeddings are one
    parameter, counted once (``model.parameters()`` yields it once).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**json.loads(architecture)))
    numels = tuple(p.numel() for p in model.parameters())
    # As DeepSpeed's estimate_zero3_model_states_mem_needs_all_live: a module's own parameters.
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return numels, largest


def _quantum_layers(trial) -> int:
    if not trial.quantum.enabled:
        return 0
    layers = _architecture(trial.model)["num_hidden_layers"]
    return layers if trial.quantum.layers is None else len(set(trial.quantum.layers))


def count_parameters(model_config, quantum_config=None) -> int:
    """The exact parameter count of a trial's model, from a model built on the meta device.

    Args:
        model_config: a ``qstudy.config.ModelConfig``: a ``path`` checkpoint's
            ``config.json``, else the preset and ``num_hidden_layers``. llama-tiny uses
            LlamaConfig's default vocabulary (32000); a trial sets the task's.
        quantum_config: a ``qstudy.config.QuantumConfig``; if enabled, adds the quantum
            attention's parameters, computed arithmetically (they are tiny and need no
            model): per chosen layer ``2·circuit_depth·n_qubits`` angles (a, b) plus one
            gate per attention head.

    Returns:
        The number of parameters.

    Raises:
        ConfigError: ``model.path``'s ``config.json`` is missing or unreadable.
    """
    total = sum(_model_sizes(model_config)[0])
    if quantum_config is not None and quantum_config.enabled:
        arch = _architecture(model_config)
        layers = arch["num_hidden_layers"] if quantum_config.layers is None else len(set(quantum_config.layers))
        per_layer = 2 * quantum_config.circuit_depth * quantum_config.n_qubits + arch["num_attention_heads"]
        total += layers * per_layer
    return total


# ----------------------------------------------------------------------------- memory


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory of one trial shape (GiB), and whether it fits.

    Attributes:
        params: parameters of the model, quantum attention included.
        gpus: GPUs of the trial (``resources.num_workers``).
        nodes: nodes those GPUs span (``ceil(gpus / gpus_per_node)``).
        model_states_gib: params, grads and optimizer state on each GPU.
        activations_gib: activations of one micro-batch on each GPU.
        optimizer_step_gib: what the optimizer step adds on each GPU (module docstring).
        total_gib: model states + max(optimizer step, activations): the step runs after
            the backward has freed the activations.
        cpu_gib_per_node: host memory per node DeepSpeed's estimator asks for.
        gpu_memory_gib: memory of one GPU; None if not given (no decision).
        cpu_memory_gib: host memory of one node; None if not given (not checked).
        placeable: the trial's GPUs exist in the cluster (``gpus <= gpus_per_node·nodes``).
    """

    params: int
    gpus: int
    nodes: int
    model_states_gib: float
    activations_gib: float
    optimizer_step_gib: float
    total_gib: float
    cpu_gib_per_node: float
    gpu_memory_gib: float | None = None
    placeable: bool = True
    offload: bool = False
    cpu_memory_gib: float | None = None

    @property
    def usable_gib(self) -> float | None:
        return None if self.gpu_memory_gib is None else self.gpu_memory_gib * USABLE_FRACTION

    @property
    def host_fits(self) -> bool | None:
        """Whether an offload preset's host memory fits a node; None if not checked."""
        if not self.offload or self.cpu_memory_gib is None:
            return None
        return self.cpu_gib_per_node <= self.cpu_memory_gib

    @property
    def gpu_fits(self) -> bool | None:
        """Whether the per-GPU total fits the usable memory; None if no GPU memory was given."""
        return None if self.gpu_memory_gib is None else self.total_gib <= self.usable_gib

    @property
    def fits(self) -> bool | None:
        """True if it fits, False if not, None if no GPU memory was given."""
        if self.gpu_fits is None:
            return None
        return self.placeable and self.gpu_fits and self.host_fits is not False


def _deepspeed_estimators():
    # DeepSpeed picks its accelerator at import; on a machine without CUDA it falls back to
    # CPU with a warning. Saying so up front keeps the import quiet and certain.
    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def _zero_optimization(trial) -> dict[str, Any]:
    """The ``zero_optimization`` section of the DeepSpeed config the trial runs with on GPUs:
    the stage, what is offloaded and ZeRO-3's sub-groups come from there, not from the
    preset's name."""
    from qstudy.train import deepspeed_config

    return deepspeed_config(trial, use_gpu=True)["zero_optimization"]


def _model_states_bytes(
    zero: dict[str, Any], params: int, largest: int, gpus_per_node: int, nodes: int
) -> tuple[int, int]:
    """(GPU bytes, CPU bytes per node) of params, grads and optimizer state under ``zero``
    (a ``zero_optimization`` section)."""
    gpus = gpus_per_node * nodes
    stage = zero["stage"]
    if stage in (0, 1):
        partitioned = 16 * params if stage == 0 else math.ceil(16 * params / gpus)
        return 4 * params + partitioned, int(4 * params * gpus_per_node * 1.5)
    zero2, zero3 = _deepspeed_estimators()
    if stage == 2:
        cpu, gpu = zero2(
            params, num_gpus_per_node=gpus_per_node, num_nodes=nodes, cpu_offload="offload_optimizer" in zero
        )
        return gpu, cpu
    cpu, gpu, _ = zero3(
        params,
        largest,
        num_gpus_per_node=gpus_per_node,
        num_nodes=nodes,
        cpu_offload="offload_optimizer" in zero,
        cpu_offload_params="offload_param" in zero,
        zero_init=True,
    )
    return gpu, cpu


def _zero3_sub_group_size(zero: dict[str, Any]) -> int:
    """The ``sub_group_size`` of a ZeRO-3 ``zero_optimization`` section: its own value, else
    DeepSpeed's default."""
    if "sub_group_size" in zero:
        return int(zero["sub_group_size"])
    _deepspeed_estimators()  # chooses DeepSpeed's accelerator before its import
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    return int(DeepSpeedZeroConfig.model_fields["sub_group_size"].default)


def largest_zero3_sub_group(numels, gpus: int, sub_group_size: int) -> int:
    """Elements of the largest ZeRO-3 sub-group on one GPU, as DeepSpeed 0.19 forms them
    (``DeepSpeedZeroOptimizer_Stage3._create_fp16_sub_groups``): the whole partition if
    ``sub_group_size`` covers it, else consecutive parameters until their partitions
    reach ``sub_group_size``.

    Args:
        numels: elements of each trainable parameter, in the param group's order.
        gpus: ranks the parameters are partitioned over (each into ``ceil(numel / gpus)``).
        sub_group_size: ``zero_optimization.sub_group_size``.
    """
    parts = [math.ceil(numel / gpus) for numel in numels]
    if sub_group_size >= sum(parts):
        return sum(parts)
    largest = current = 0
    for part in parts:
        current += part
        if current >= sub_group_size:
            largest, current = max(largest, current), 0
    return max(largest, current)


def _optimizer_step_bytes(zero: dict[str, Any], params: int, numels, gpus: int) -> int:
    """GPU bytes the optimizer step adds (module docstring): ZeRO-3 with the optimizer on
    the GPU only, 4 bytes per element of the largest sub-group ZeRO-3 steps at once."""
    if zero["stage"] != 3 or "offload_optimizer" in zero:
        return 0
    sub_group_size = _zero3_sub_group_size(zero)
    if sub_group_size >= math.ceil(params / gpus):
        return math.ceil(4 * params / gpus)  # one sub-group: the whole partition (as measured)
    return 4 * largest_zero3_sub_group(numels, gpus, sub_group_size)


def _activation_bytes(trial) -> int:
    """Activations of one micro-batch (module docstring's formulas), bf16."""
    arch = _architecture(trial.model)
    b, s = trial.train.micro_batch_size, trial.data.max_tokens
    h, heads, layers = arch["hidden_size"], arch["num_attention_heads"], arch["num_hidden_layers"]
    vocab = arch.get("vocab_size", 32000)
    per_layer = 34 * s * b * h  # [b, s, h]-shaped tensors of one decoder layer
    scores = 18 * b * heads * s * s  # [b, heads, s, s] kept by a quantum-attention layer
    logits = 6 * b * s * vocab  # [b, s, vocab] in bf16, and in fp32 for the loss
    return layers * per_layer + _quantum_layers(trial) * scores + logits


def estimate_memory(
    trial,
    gpus_per_node: int = 8,
    nodes: int | None = None,
    gpu_memory_gib: float | None = None,
    cpu_memory_gib: float | None = None,
) -> MemoryEstimate:
    """Per-GPU memory of a trial on ``resources.num_workers`` GPUs (one per worker).

    Args:
        trial: a ``qstudy.config.TrialConfig``.
        gpus_per_node: GPUs of one node of the cluster; the trial's GPUs fill nodes in
            turn (DeepSpeed's estimators need the split: CPU memory is per node).
        nodes: nodes in the cluster; a trial that needs more GPUs than
            ``gpus_per_node·nodes`` is not placeable. None: as many as it needs.
        gpu_memory_gib: memory of one GPU, for the fit decision; None: no decision.
        cpu_memory_gib: host memory of one node; None: host memory not checked.

    Returns:
        A MemoryEstimate.
    """
    params = count_parameters(trial.model, trial.quantum)
    numels, largest = _model_sizes(trial.model)
    gpus = trial.resources.num_workers
    used_nodes = math.ceil(gpus / gpus_per_node)
    # DeepSpeed's estimators take a uniform layout: nodes x GPUs each. A trial smaller than
    # a node runs on part of one; a bigger one is counted as full nodes (gpus / nodes each).
    per_node = min(gpus, gpus_per_node) if used_nodes == 1 else gpus / used_nodes
    zero = _zero_optimization(trial)
    gpu_bytes, cpu_bytes = _model_states_bytes(zero, params, largest, per_node, used_nodes)
    activations = _activation_bytes(trial)
    step = _optimizer_step_bytes(zero, params, numels, gpus)
    return MemoryEstimate(
        params=params,
        gpus=gpus,
        nodes=used_nodes,
        model_states_gib=gpu_bytes / GIB,
        activations_gib=activations / GIB,
        optimizer_step_gib=step / GIB,
        total_gib=(gpu_bytes + max(step, activations)) / GIB,
        cpu_gib_per_node=cpu_bytes / GIB,
        gpu_memory_gib=gpu_memory_gib,
        placeable=nodes is None or gpus <= gpus_per_node * nodes,
        offload="offload_optimizer" in zero,
        cpu_memory_gib=cpu_memory_gib,
    )


# ------------------------------------------------------------------------------ study


@dataclasses.dataclass(frozen=True)
class PlanRow:
    """One distinct trial shape of a study and its estimate.

    Attributes:
        where: where the shape comes from: ``trial``, ``baselines.I``, ``arms.NAME`` or
            ``space (key=value, ...)`` naming the searched shape keys.
        trial: the trial config of that shape.
        estimate: its MemoryEstimate.
    """

    where: str
    trial: Any
    estimate: MemoryEstimate

    def shape(self) -> tuple:
        t = self.trial
        return (
            t.model.preset,
            t.model.path,
            t.model.num_hidden_layers,
            t.deepspeed.preset,
            t.resources.num_workers,
            t.resources.use_gpu,
            t.train.micro_batch_size,
            t.data.max_tokens,
            t.quantum.enabled,
            None if t.quantum.layers is None else tuple(t.quantum.layers),
            t.optimizer.response,
            t.optimizer.scope,
        )


def _model_name(model_config) -> str:
    """The preset, or the checkpoint directory that replaces it."""
    return model_config.preset if model_config.path is None else model_config.path


def _shape_values(spec) -> list[Any]:
    """The values of a searched shape key worth planning: every choice, or the range's ends."""
    if spec.type == "categorical":
        return list(spec.choices)
    return [spec.low] if spec.low == spec.high else [spec.low, spec.high]


def _candidates(study) -> list[tuple[str, dict[str, Any]]]:
    searched = {key: _shape_values(spec) for key, spec in study.space.items() if key in SHAPE_KEYS}
    found: list[tuple[str, dict[str, Any]]] = [("trial", {})]
    for combo in itertools.product(*searched.values()):
        values = dict(zip(searched, combo))
        found.append((f"space ({', '.join(f'{k}={v!r}' for k, v in values.items())})", values))
    # A baseline adds a shape only where it sets a shape key to a value the space lacks.
    for i, baseline in enumerate(study.baselines):
        fixed = {key: value for key, value in baseline.items() if key in SHAPE_KEYS}
        rest = {key: values for key, values in searched.items() if key not in fixed}
        for combo in itertools.product(*rest.values()):
            found.append((f"baselines.{i}", {**fixed, **dict(zip(rest, combo))}))
    # An arm of a comparison study (which searches nothing) is one fixed shape.
    for name, overrides in study.arms.items():
        found.append((f"arms.{name}", {key: value for key, value in overrides.items() if key in SHAPE_KEYS}))
    return found


def plan_study(
    study,
    gpus_per_node: int = 8,
    gpu_memory_gib: float | None = None,
    nodes: int | None = None,
    cpu_memory_gib: float | None = None,
) -> list[PlanRow]:
    """One row per distinct trial shape of a study: the fixed trial, every combination of
    the searched shape keys (``SHAPE_KEYS``: categorical choices, the ends of numeric
    ranges), and each baseline. A combination the trial config refuses (e.g. a batch
    that no longer divides) is left out: the sampler's trial would fail validation anyway.

    Args:
        study: a ``qstudy.config.StudyConfig``.
        gpus_per_node, nodes, gpu_memory_gib, cpu_memory_gib: as `estimate_memory`.

    Returns:
        PlanRows, the first of each shape only, in the order above.
    """
    rows, seen = [], set()
    for where, values in _candidates(study):
        try:
            trial = study.trial_config(values)
        except ValueError:
            continue
        row = PlanRow(where, trial, estimate_memory(trial, gpus_per_node, nodes, gpu_memory_gib, cpu_memory_gib))
        if row.shape() not in seen:
            seen.add(row.shape())
            rows.append(row)
    return rows


def format_plan(rows: list[PlanRow]) -> str:
    """The rows as a fixed-width table (GiB per GPU unless said)."""
    header = (
        "where",
        "model",
        "layers",
        "deepspeed",
        "gpus",
        "batch x tokens",
        "params",
        "states",
        "activ.",
        "opt.step",
        "total",
        "usable",
        "fits",
        "cpu/node",
    )
    lines = [header]
    for row in rows:
        t, e = row.trial, row.estimate
        layers = _architecture(t.model)["num_hidden_layers"]
        fits = (
            "cpu trial"
            if not t.resources.use_gpu
            else (
                "-"
                if e.fits is None
                else "yes"
                if e.fits
                else "no GPUs"
                if not e.placeable
                else "no (host)"
                if e.gpu_fits
                else "no"
            )
        )
        lines.append(
            (
                row.where,
                _model_name(t.model),
                str(layers),
                t.deepspeed.preset,
                str(e.gpus),
                f"{t.train.micro_batch_size} x {t.data.max_tokens}",
                f"{e.params / 1e9:.3f}B",
                f"{e.model_states_gib:.1f}",
                f"{e.activations_gib:.1f}",
                f"{e.optimizer_step_gib:.1f}",
                f"{e.total_gib:.1f}",
                "-" if e.usable_gib is None else f"{e.usable_gib:.1f}",
                fits,
                f"{e.cpu_gib_per_node:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    return "\n".join(text)


def _advice(trial) -> str:
    from qstudy.train import zero_stage

    preset = trial.deepspeed.preset
    smaller = "a smaller train.micro_batch_size or data.max_tokens"
    if preset == "zero3_offload":
        return f"use more GPUs (resources.num_workers) or {smaller}"
    if zero_stage(preset) == 3:
        return f"use zero3_offload or more GPUs (resources.num_workers), or {smaller}"
    return "use zero3 or zero3_offload or more GPUs (resources.num_workers)"


def check_fits(
    study,
    gpus_per_node: int,
    gpu_memory_gib: float,
    nodes: int | None = None,
    source: str = "",
    cpu_memory_gib: float | None = None,
) -> list[str]:
    """Problems of a study whose GPU trials cannot fit, as ConfigError lines; [] if all fit.

    CPU trials (``resources.use_gpu: false``) are not checked.

    Args:
        study: a ``qstudy.config.StudyConfig``.
        gpus_per_node: GPUs of one node.
        gpu_memory_gib: memory of one GPU.
        nodes: nodes of the cluster (None: no placement check).
        source: the study file, the lines' prefix.
        cpu_memory_gib: host memory of one node (None: not checked).

    Returns:
        Lines like ``FILE: trial: llama-3.1-70b needs 148.2 GiB per GPU with zero3 on 8 GPUs,
        more than 80 GiB (90% of it usable): use zero3_offload or more GPUs ...``.
    """
    problems = []
    for row in plan_study(study, gpus_per_node, gpu_memory_gib, nodes, cpu_memory_gib):
        t, e = row.trial, row.estimate
        if not t.resources.use_gpu or e.fits:
            continue
        prefix = f"{source}: {row.where}" if source else row.where
        if not e.placeable:
            problems.append(
                f"{prefix}: resources.num_workers: needs {e.gpus} GPUs, the cluster has "
                f"{nodes} x {gpus_per_node} = {nodes * gpus_per_node}"
            )
            continue
        if e.gpu_fits:  # the host does not
            problems.append(
                f"{prefix}: {_model_name(t.model)} needs {e.cpu_gib_per_node:.0f} GiB of host memory per node with "
                f"{t.deepspeed.preset} on {e.gpus} GPU{'s' if e.gpus != 1 else ''} (DeepSpeed's estimate for the "
                f"offloaded states), more than the {cpu_memory_gib:g} GiB a node has: spread the trial over more "
                f"nodes (resources.num_workers above the GPUs of one node), use zero3 on more GPUs, or nodes with "
                f"more memory"
            )
            continue
        problems.append(
            f"{prefix}: {_model_name(t.model)} needs {e.total_gib:.1f} GiB per GPU with {t.deepspeed.preset} on {e.gpus} "
            f"GPU{'s' if e.gpus != 1 else ''} ({e.model_states_gib:.1f} model states + the larger of "
            f"{e.activations_gib:.1f} activations at {t.train.micro_batch_size} x {t.data.max_tokens} tokens and "
            f"{e.optimizer_step_gib:.1f} at the optimizer step), more than {gpu_memory_gib:g} GiB "
            f"({USABLE_FRACTION:.0%} of it usable): {_advice(t)}"
        )
    return problems


def _probe_memory_gib() -> tuple[float, float]:
    """(memory of this task's GPU, host memory of its node), GiB."""
    import psutil  # a Ray dependency
    import torch

    return torch.cuda.get_device_properties(0).total_memory / GIB, psutil.virtual_memory().total / GIB


def check_fits_on_ray(
    study,
    source: str,
    gpu_memory_gib: float | None = None,
    timeout_s: float = 300,
    cpu_memory_gib: float | None = None,
) -> list[str]:
    """`check_fits` against the connected Ray cluster (call after ``ray.init``).

    GPUs per node: the most any alive node has. GPU memory: ``gpu_memory_gib`` if given,
    else measured by a one-GPU Ray task (``torch.cuda.get_device_properties``), which
    takes a GPU for a second or two, before any trial does; the same task reads its
    node's host memory (``psutil``) unless ``cpu_memory_gib`` is given. With
    ``gpu_memory_gib`` given and ``cpu_memory_gib`` not, host memory is not checked.
    A cluster without GPUs (a laptop, a CPU-only local run) is not checked;
    ``check_placement`` already refuses GPU trials there. If the probe cannot get a GPU
    within ``timeout_s`` (an autoscaler that has not started a GPU node), the check is
    skipped with a warning.

    Returns:
        check_fits' lines; [] if all fit or nothing could be checked.
    """
    import ray

    gpus = [int(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node.get("Alive")]
    if not any(gpus):
        return []
    if gpu_memory_gib is None:
        probe = ray.remote(num_gpus=1, num_cpus=0)(_probe_memory_gib)
        try:
            gpu_memory_gib, host_gib = ray.get(probe.remote(), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            logger.warning("no GPU answered within %s s: per-GPU memory not checked (pass the GPU's memory)", timeout_s)
            return []
        cpu_memory_gib = host_gib if cpu_memory_gib is None else cpu_memory_gib
    return check_fits(study, max(gpus), gpu_memory_gib, source=source, cpu_memory_gib=cpu_memory_gib)

"""Models of a trial: the Llama presets, and the quantum attention of docs/design.md §3
installed into HuggingFace Llama.

`llama_config_kwargs` is the one mapping from a preset to its ``LlamaConfig``
arguments: `build_model` builds from it and `qstudy plan` sizes the same architecture.
The layer is registered in transformers' ``AttentionInterface`` under the name
``qstudy_quantum`` (no copy of Llama's modeling code): every attention module chosen by
`install_quantum_attention` gets real ``nn.Parameter``s — angles ``quantum_a``,
``quantum_b`` [circuit_depth, n_qubits] and a gate ``quantum_gate`` [heads] initialised to 0 —
so DeepSpeed, the optimizer and checkpoints see them; other layers run torch's SDPA.
The options live in ``config.quantum_attention`` and travel with ``save_pretrained``;
`load_quantum_llama` rebuilds the layer before the weights are loaded.

Under ZeRO-3, `build_model` constructs the model partitioned from the start
(transformers' DeepSpeed integration: ``deepspeed.zero.Init``), so no rank ever holds
the whole model; the quantum parameters are partitioned as they are added.

transformers is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudy.quantum import check_circuit_size, check_simulator, quantum_attention, response_series

__all__ = [
    "LLAMA_PRESETS",
    "QUANTUM_ATTENTION",
    "attention_modules",
    "build_model",
    "checkpoint_quantum_mismatches",
    "QuantumAttentionOptions",
    "install_quantum_attention",
    "llama_config_kwargs",
    "load_quantum_llama",
    "quantum_attention_forward_time_s",
    "register_quantum_attention",
]

logger = logging.getLogger(__name__)

QUANTUM_ATTENTION = "qstudy_quantum"
"""The name of the layer in transformers' AttentionInterface and ``config._attn_implementation``."""

_CONFIG_KEY = "quantum_attention"


# ============================================================================ presets
# Published Llama architectures (random init for scaling studies) and the tiny CPU model.
# Values from the models' published ``config.json`` files (meta-llama on the HF Hub);
# parameter counts 1.24B, 3.21B, 8.03B, 70.6B.
def _llama3(hidden, intermediate, layers, heads, head_dim, tied, factor, vocab=128256) -> dict[str, Any]:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=8,
        head_dim=head_dim,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=128000,
        eos_token_id=128001,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )


LLAMA_PRESETS: dict[str, dict[str, Any]] = {
    # 2 layers of 64 wide: trains a few hundred steps a minute on 2 CPU cores.
    "llama-tiny": dict(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
    "llama-3.2-1b": _llama3(2048, 8192, 16, 32, 64, True, 32.0),
    "llama-3.2-3b": _llama3(3072, 8192, 28, 24, 128, True, 32.0),
    "llama-3.1-8b": _llama3(4096, 14336, 32, 32, 128, False, 8.0),
    "llama-3.1-70b": _llama3(8192, 28672, 80, 64, 128, False, 8.0),
}


def llama_config_kwargs(preset: str, num_hidden_layers: int | None = None) -> dict[str, Any]:
    """The ``LlamaConfig`` arguments of a preset: the one mapping from a preset's name to
    its architecture, for the model a trial builds and the one `qstudy plan` sizes.

    Args:
        preset: a key of `LLAMA_PRESETS`.
        num_hidden_layers: the depth override (``model.num_hidden_layers``); None keeps the
            preset's. llama-tiny sets no ``vocab_size`` (LlamaConfig's default, 32000):
            `build_model` gives it the trial data's.

    Returns:
        A new dict, the caller's to change.
    """
    kwargs = dict(LLAMA_PRESETS[preset])
    if num_hidden_layers is not None:
        kwargs["num_hidden_layers"] = num_hidden_layers
    return kwargs


# ============================================================================ options
@dataclasses.dataclass(frozen=True)
class QuantumAttentionOptions:
    """The quantum attention's settings, as stored in ``config.quantum_attention``."""

    n_qubits: int = 4  # register size, 1..12 (paper: 4)
    circuit_depth: int = 2  # circuit layers, >= 1 (paper: 2)
    simulator: str = "torch"  # "torch" (batched statevector, autograd) or "aer" (Qiskit Aer, shift rule)
    layers: tuple[int, ...] | None = None  # decoder layers that get the circuit; None = all
    seed: int = 0  # seeds the initial angles a, b
    compile: bool = False  # torch.compile the attention function (eager fallback if it fails)

    def __post_init__(self) -> None:
        check_circuit_size(self.n_qubits, self.circuit_depth, "circuit_depth")
        check_simulator(self.simulator)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got seed={self.seed!r}")
        if self.layers is not None:
            layers = tuple(self.layers)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) for i in layers):
                raise ValueError(
                    f"layers must be None (all) or a non-empty list of layer indices, got layers={self.layers!r}"
                )
            object.__setattr__(self, "layers", tuple(sorted(set(layers))))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["layers"] = None if self.layers is None else list(self.layers)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantumAttentionOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown quantum_attention options {unknown}; allowed: {sorted(known)}")
        return cls(**values)


# ============================================================================ the layer
@functools.cache
def register_quantum_attention() -> None:
    """Registers ``qstudy_quantum`` in transformers' attention and mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(QUANTUM_ATTENTION, _quantum_attention_forward)
    # SDPA's boolean masks (None for a plain causal mask): the non-quantum layers run SDPA.
    AttentionMaskInterface.register(QUANTUM_ATTENTION, sdpa_mask)


def _quantum_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # [b, heads, q_len, d_head]
    key: torch.Tensor,  # [b, kv_heads, k_len, d_head]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # bool [b, 1, q_len, k_len], True attends; or None
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The ``AttentionInterface`` function: logit = s + γ_h·Φ(s) where the layer has a circuit."""
    if not hasattr(module, "quantum_gate"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    started = time.perf_counter()
    options: QuantumAttentionOptions = module.quantum_options
    series, omega = _module_series(module, options.simulator)
    # Same causal rule as transformers' SDPA path: a None mask means "plain causal".
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(query.shape[2] > 1 and attention_mask is None and is_causal)
    attend = _compiled_attention() if options.compile else quantum_attention
    args = (query, key, value, series, omega, module.quantum_gate, attention_mask, is_causal, scaling, dropout)
    try:
        out = attend(*args)
    except Exception as error:  # a compile failure must not stop a trial: fall back to eager
        if attend is quantum_attention:
            raise
        logger.warning("torch.compile of the quantum attention failed (%s); running it eagerly", error)
        _COMPILE_STATE["failed"] = True
        out = quantum_attention(*args)
    _FORWARD_TIME["s"] += time.perf_counter() - started
    return out.transpose(1, 2).contiguous(), None


# Seconds spent in the quantum layers' forward (circuit series + scores), for the trial's
# cost metric. Forward only: the backward runs inside autograd, outside this function; on
# CUDA this is launch time unless the caller synchronises.
_FORWARD_TIME = {"s": 0.0}


def quantum_attention_forward_time_s() -> float:
    """Cumulative seconds this process spent in quantum attention forwards."""
    return _FORWARD_TIME["s"]


def _module_series(module: nn.Module, simulator: str) -> tuple[torch.Tensor, float]:
    """Φ's series for one layer: simulated once per forward, or cached while the angles don't change
    and no gradient is needed (e.g. every decoding step of ``generate``).

    The cache is keyed on the angles' values, not on their storage or ``_version``:
    DeepSpeed writes updated weights back into the same storage without bumping the
    version counter, so a storage-keyed cache served the angles of step 0 to every later
    eval. The angles are [depth, n_qubits], so the comparison costs nothing.
    """
    a, b = module.quantum_a, module.quantum_b
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if needs_grad:
        return response_series(a, b, simulator)
    cached = getattr(module, "_quantum_series_cache", None)
    if cached is not None and cached[0] == simulator and _same_values(cached[1], a) and _same_values(cached[2], b):
        return cached[3]
    with torch.no_grad():
        series = response_series(a, b, simulator)
    module._quantum_series_cache = (simulator, a.detach().clone(), b.detach().clone(), series)
    return series


def _same_values(kept: torch.Tensor, current: torch.Tensor) -> bool:
    return (
        kept.shape == current.shape
        and kept.dtype == current.dtype
        and kept.device == current.device
        and bool(torch.equal(kept, current.detach()))
    )


_COMPILE_STATE: dict[str, Any] = {"failed": False, "function": None}


def _compiled_attention():
    """``torch.compile`` of `quantum_attention`, built once; eager after a failure."""
    if _COMPILE_STATE["failed"]:
        return quantum_attention
    if _COMPILE_STATE["function"] is None:
        _COMPILE_STATE["function"] = torch.compile(quantum_attention)
    return _COMPILE_STATE["function"]


# ============================================================================ install
def attention_modules(model: nn.Module) -> dict[int, nn.Module]:
    """Every attention module of the decoder by layer index (modules with ``layer_idx`` and
    ``o_proj``), whether it has the quantum attention or not: those that do have a
    ``quantum_gate``."""
    found = {}
    for module in model.modules():
        if hasattr(module, "layer_idx") and hasattr(module, "o_proj") and hasattr(module, "num_key_value_groups"):
            found[int(module.layer_idx)] = module
    if not found:
        raise ValueError(f"found no Llama-style attention modules in {type(model).__name__}")
    return dict(sorted(found.items()))


def install_quantum_attention(
    model: nn.Module,
    n_qubits: int = 4,
    circuit_depth: int = 2,
    simulator: str = "torch",
    layers: Sequence[int] | None = None,
    seed: int = 0,
    compile: bool = False,
) -> nn.Module:
    """Installs the quantum attention of docs/design.md §3 into a HuggingFace Llama, in place.

    In each chosen layer, for every scaled score s = q·k/√d_head (before the mask):
    logit = s + γ_h·Φ(s), Φ the response of an (n_qubits, circuit_depth) circuit with trainable
    angles a, b. γ starts at 0, so the model's outputs are unchanged at installation.

    Args:
        model: A transformers Llama (``LlamaForCausalLM``, ``LlamaModel``, ...).
        n_qubits: Register size, 1..12.
        circuit_depth: Circuit layers, >= 1 (the ``depth`` of ``attention_circuit``).
        simulator: ``"torch"`` or ``"aer"``.
        layers: Decoder layer indices that get the circuit; None means all.
        seed: Seeds a, b ~ U(-π, π) (layer i's values do not depend on ``layers``).
        compile: ``torch.compile`` the attention function (falls back to eager on failure).

    Returns:
        The same model, with ``config._attn_implementation == "qstudy_quantum"`` and
        ``config.quantum_attention`` holding the options.

    Raises:
        ValueError: An option out of range, a layer index that does not exist, or a
            model that already has the quantum attention.
    """
    options = QuantumAttentionOptions(
        n_qubits=n_qubits,
        circuit_depth=circuit_depth,
        simulator=simulator,
        layers=None if layers is None else tuple(layers),
        seed=seed,
        compile=compile,
    )
    modules = attention_modules(model)
    if any(hasattr(m, "quantum_gate") for m in modules.values()):
        raise ValueError("the model already has the quantum attention installed")
    _add_quantum_parameters(modules, options)
    register_quantum_attention()
    config = model.config
    setattr(config, _CONFIG_KEY, options.to_dict())
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(QUANTUM_ATTENTION)
    else:
        config._attn_implementation = QUANTUM_ATTENTION
    return model


def _add_quantum_parameters(modules: dict[int, nn.Module], options: QuantumAttentionOptions) -> None:
    chosen = list(modules) if options.layers is None else list(options.layers)
    missing = [i for i in chosen if i not in modules]
    if missing:
        raise ValueError(
            f"layers must be indices in [0, {max(modules)}], got layers={list(options.layers)} (no layer {missing[0]})"
        )
    generator = torch.Generator().manual_seed(options.seed)
    shape = (options.circuit_depth, options.n_qubits)
    for index, module in modules.items():  # draw for every layer, so a layer's angles ignore `layers`
        a = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * torch.pi
        b = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * torch.pi
        if index not in chosen:
            continue
        weight = module.o_proj.weight
        heads = module.config.num_attention_heads
        device = weight.device  # "meta" inside from_pretrained: the checkpoint fills the values
        module.quantum_a = nn.Parameter(a.to(device=device, dtype=weight.dtype))
        module.quantum_b = nn.Parameter(b.to(device=device, dtype=weight.dtype))
        module.quantum_gate = nn.Parameter(torch.zeros(heads, device=device, dtype=weight.dtype))
        module.quantum_options = options
        if hasattr(weight, "ds_id"):
            # The model was built under ZeRO-3's zero.Init: partition these too (rank 0's
            # values), so the model is uniformly partitioned and a ZeRO-3 from_pretrained
            # loads them into every rank, not only into rank 0's plain tensors.
            weight.convert_to_zero_parameters([module.quantum_a, module.quantum_b, module.quantum_gate])


# ============================================================================ save / load
def load_quantum_llama(path: str | Path, **from_pretrained_kwargs: Any) -> nn.Module:
    """Loads a causal LM saved with ``save_pretrained`` after `install_quantum_attention`.

    The quantum parameters are created from ``config.quantum_attention`` before the
    weights are read, so their trained values (a, b, γ) come back with the rest.

    Args:
        path: A directory written by ``save_pretrained``.
        **from_pretrained_kwargs: Passed to ``from_pretrained`` (``dtype``, ``device_map``, ...).

    Raises:
        ValueError: The checkpoint has no ``quantum_attention`` in its config.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    values = getattr(config, _CONFIG_KEY, None)
    if not isinstance(values, dict):
        raise ValueError(
            f"{path}: config.json has no '{_CONFIG_KEY}' entry; it was not saved with the quantum attention"
        )
    options = QuantumAttentionOptions.from_dict(values)
    register_quantum_attention()
    base = AutoModelForCausalLM._model_mapping[type(config)]
    model = _with_quantum_init(base).from_pretrained(
        path, config=config, attn_implementation=QUANTUM_ATTENTION, **from_pretrained_kwargs
    )
    model.__class__ = base  # the subclass only hooks __init__; save_pretrained names the base class
    for module in attention_modules(model).values():
        if hasattr(module, "quantum_gate"):
            module.quantum_options = options
    return model


@functools.cache
def _with_quantum_init(base: type) -> type:
    """``base`` whose ``__init__`` adds the quantum parameters named by ``config.quantum_attention``."""

    def __init__(self, config, *args, **kwargs):
        base.__init__(self, config, *args, **kwargs)
        options = QuantumAttentionOptions.from_dict(getattr(config, _CONFIG_KEY))
        _add_quantum_parameters(attention_modules(self), options)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__})


# ============================================================================ presets, checkpoints
@contextlib.contextmanager
def _zero3_init(deepspeed_config: dict[str, Any] | None):
    """Models built (``from_config``) or loaded (``from_pretrained``) inside are partitioned
    by ``deepspeed.zero.Init`` when ``deepspeed_config`` is ZeRO-3; otherwise does nothing.

    transformers applies zero.Init while an ``HfDeepSpeedConfig`` is alive (a global
    weakref); it is unset on the way out, so nothing built later is partitioned by surprise.
    """
    if (deepspeed_config or {}).get("zero_optimization", {}).get("stage") != 3:
        yield
        return
    import deepspeed
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    # zero.Init checks the batch sizes against the world size before it wraps the
    # torch.distributed group (https://github.com/deepspeedai/DeepSpeed/issues/3341): unwrapped, it sees a world of 1 and any
    # multi-rank config fails. Wrap the caller's group first (raises if there is none).
    deepspeed.init_distributed(dist_init_required=False)
    alive = HfDeepSpeedConfig(deepspeed_config)  # noqa: F841 - held: transformers keeps only a weakref
    try:
        yield
    finally:
        unset_hf_deepspeed_config()


def checkpoint_quantum_mismatches(saved: dict[str, Any], quantum) -> list[tuple[str, Any, Any]]:
    """How a trial's ``quantum`` settings differ from a checkpoint's saved quantum attention.

    A checkpoint saved with the quantum attention fixes its parameters' shapes (qubits,
    depth, the layers that have them), so a trial loading it must ask for the same ones,
    or MLflow would log settings that never ran. The simulator and compilation stay the
    trial's choice; the angles' seed is moot (the checkpoint holds the angles).

    Args:
        saved: ``config.quantum_attention`` of the checkpoint.
        quantum: the trial's ``QuantumConfig``.

    Returns:
        ``[(key, checkpoint's value, trial's value)]``, empty when they agree.
    """
    options = QuantumAttentionOptions.from_dict(saved)
    if not quantum.enabled:
        return [("enabled", True, False)]
    layers = None if quantum.layers is None else sorted(set(quantum.layers))
    ours = {"n_qubits": quantum.n_qubits, "circuit_depth": quantum.circuit_depth, "layers": layers}
    theirs = {
        "n_qubits": options.n_qubits,
        "circuit_depth": options.circuit_depth,
        "layers": options.to_dict()["layers"],
    }
    return [(key, theirs[key], ours[key]) for key in ours if ours[key] != theirs[key]]


def build_model(trial, data, deepspeed_config: dict[str, Any] | None = None) -> nn.Module:
    """The trial's model: a preset (random init, seeded by the caller) or a local
    checkpoint (``model.path``, offline), with the quantum attention installed per
    ``trial.quantum``.

    With a ZeRO-3 ``deepspeed_config`` the model is built under ``deepspeed.zero.Init``:
    every parameter is partitioned over the ranks as it is created (rank 0 initialises
    or loads the values), so a rank never holds the whole model. This needs
    ``torch.distributed`` to be initialised, and the config is the one later given to
    ``deepspeed.initialize``.

    Args:
        trial: a ``qstudy.config.TrialConfig``.
        data: the trial's ``qstudy.train.TrialData`` (tokenizer sizes, classification labels).
        deepspeed_config: the trial's DeepSpeed config (``qstudy.train.deepspeed_config``);
            None or another stage: the model is built whole.
    """
    with _zero3_init(deepspeed_config):
        return _build_model(trial, data)


def _build_model(trial, data) -> nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

    spec, quantum = trial.model, trial.quantum
    if spec.path is not None:
        saved = json.loads((Path(spec.path) / "config.json").read_text()).get(_CONFIG_KEY)
        if saved is not None:
            mismatches = checkpoint_quantum_mismatches(saved, quantum)
            if mismatches:
                raise ValueError(
                    f"{spec.path}: the checkpoint's quantum attention differs from the trial's: "
                    + "; ".join(
                        f"quantum.{key} is {ours!r}, the checkpoint has {theirs!r}" for key, theirs, ours in mismatches
                    )
                )
            model = load_quantum_llama(spec.path, local_files_only=True)
            # How the circuit is simulated is the trial's choice; the parameters are the checkpoint's.
            for module in attention_modules(model).values():
                if hasattr(module, "quantum_gate"):
                    module.quantum_options = dataclasses.replace(
                        module.quantum_options, simulator=quantum.simulator, compile=quantum.compile
                    )
        else:
            model = AutoModelForCausalLM.from_pretrained(spec.path, local_files_only=True, attn_implementation="sdpa")
    else:
        kwargs = llama_config_kwargs(spec.preset, spec.num_hidden_layers)
        if spec.preset == "llama-tiny":
            kwargs["vocab_size"] = data.vocab_size
        kwargs.update(pad_token_id=data.pad_token_id, bos_token_id=data.bos_token_id, eos_token_id=data.eos_token_id)
        # from_config, not the class itself: that is where transformers applies zero.Init.
        if data.kind == "classification":
            config = LlamaConfig(**kwargs, num_labels=data.num_labels, attn_implementation="sdpa")
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(LlamaConfig(**kwargs, attn_implementation="sdpa"))
    if quantum.enabled and not any(hasattr(m, "quantum_gate") for m in attention_modules(model).values()):
        install_quantum_attention(
            model,
            n_qubits=quantum.n_qubits,
            circuit_depth=quantum.circuit_depth,
            simulator=quantum.simulator,
            layers=quantum.layers,
            seed=quantum.seed,
            compile=quantum.compile,
        )
    return model

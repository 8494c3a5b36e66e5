"""The trial config: one pydantic model per concern, YAML keys = constructor arguments.

A trial config is what one Ray Train run needs: model, quantum attention, optimizer,
data, training schedule, DeepSpeed preset and resources. A study's `trial:` section and
`qstudy train FILE` both use it; a searched key is a dotted path into it
(`optimizer.quantum_weight`, `quantum.n_qubits`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError

from qstudy.config._errors import ConfigError
from qstudy.config._loader import ConfigModel, Item, Unchecked, format_line, load_yaml, touches, validate_partial

__all__ = [
    "ModelConfig",
    "QuantumConfig",
    "OptimizerConfig",
    "DataConfig",
    "TrainConfig",
    "DeepSpeedConfig",
    "ResourcesConfig",
    "TrialConfig",
    "load_trial_config",
    "MODEL_PRESETS",
    "DEEPSPEED_PRESETS",
]

MODEL_PRESETS = ("llama-tiny", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b")
DEEPSPEED_PRESETS = ("zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")


def _expand(path: str) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` expanded, so a study file can name a checkpoint in the
    user's model cache or a data set by an environment variable; an unset variable stays
    as written, and the path check says so."""
    return os.path.expanduser(os.path.expandvars(path))


LocalPath = Annotated[str, AfterValidator(_expand)]


class ModelConfig(ConfigModel):
    preset: Literal[MODEL_PRESETS] = Field("llama-tiny", description="architecture; random init unless `path` is set")
    path: LocalPath | None = Field(
        None, description="local HuggingFace checkpoint directory (config, weights, tokenizer); ~ and $VAR expand"
    )
    num_hidden_layers: int | None = Field(
        None, ge=1, description="override the preset's depth (reduced-depth runs of a big preset's layer shapes)"
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU (bf16 is ~2x slower on CPU)"
    )


class QuantumConfig(ConfigModel):
    enabled: bool = Field(True, description="install the quantum attention layer (docs/design.md §3)")
    n_qubits: int = Field(4, ge=1, le=12, description="qubits of the attention response circuit")
    circuit_depth: int = Field(2, ge=1, description="layers of the attention response circuit")
    simulator: Literal["torch", "aer"] = Field("torch", description="torch statevector (fast) or Qiskit Aer")
    layers: list[int] | None = Field(None, description="attention layers that get the circuit; default all")
    seed: int = Field(0, ge=0, description="seed of the circuit angles' initialisation")
    compile: bool = Field(
        False,
        description="torch.compile the attention function: ~1.2x SDPA instead of ~2.2x, for ~20 s of "
        "compilation per worker process (worth it past a few dozen steps)",
    )


class OptimizerConfig(ConfigModel):
    """Arguments of qstudy.optim.SuperpositionalAdamW, same names."""

    lr: float = Field(1e-3, gt=0, description="learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's running-average coefficients")
    eps: float = Field(1e-8, ge=0, description="added to sqrt(v_hat)")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")
    quantum_weight: float = Field(0.5, ge=0, description="λ, the weight of the perturbation; 0 is AdamW")
    n_qubits: int = Field(4, ge=1, le=20, description="leading coordinates perturbed / circuit block size")
    circuit_depth: int = Field(0, ge=0, description="layers of the optimizer's circuit response")
    response: Literal["sin", "circuit", "gaussian", "none"] = Field("sin", description="how Q is made")
    scope: Literal["leading", "all"] = Field("leading", description="which coordinates are perturbed")
    seed: int = Field(0, ge=0, description="seed of the gaussian response")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", description="after the warm-up: constant lr, or linear decay to 0 at train.max_steps"
    )

    def optimizer_kwargs(self) -> dict:
        """The keyword arguments of ``SuperpositionalAdamW``: these settings less the lr
        schedule, which the training loop applies per step."""
        return self.model_dump(exclude={"warmup_steps", "lr_schedule"})


class DataConfig(ConfigModel):
    task: Literal["gsm8k", "synthetic_gsm8k", "classification"] = Field(
        "synthetic_gsm8k",
        description="gsm8k: JSONL/HF-dataset files; synthetic_gsm8k: offline generator; "
        "classification: the paper's synthetic sequence classification (experiment 1)",
    )
    train_path: LocalPath | None = Field(
        None, description="gsm8k: train JSONL file or saved HF dataset directory; ~ and $VAR expand"
    )
    eval_path: LocalPath | None = Field(None, description="gsm8k: held-out JSONL file or HF dataset directory")
    train_examples: int | None = Field(None, ge=1, description="use the first N training examples (all if unset)")
    eval_examples: int = Field(64, ge=1, description="held-out examples for eval loss")
    generate_examples: int = Field(
        8, ge=0, description="held-out problems answered by greedy generation (GSM8K accuracy)"
    )
    max_new_tokens: int = Field(64, ge=1, description="generation budget per GSM8K answer")
    max_tokens: int = Field(256, ge=8, description="sequence length; longer examples are truncated")
    seed: int = Field(0, ge=0, description="seed of the synthetic data")


class TrainConfig(ConfigModel):
    max_steps: int = Field(20, ge=1, description="optimizer steps of the trial")
    global_batch_size: int = Field(8, ge=1, description="sequences per optimizer step, all workers together")
    micro_batch_size: int = Field(4, ge=1, description="sequences per worker per forward pass")
    eval_every_steps: int = Field(10, ge=1, description="eval cadence (and at the last step)")
    log_every_steps: int = Field(1, ge=1, description="train-metric report cadence")
    checkpoint_every_steps: int | None = Field(
        None,
        ge=0,
        description="DeepSpeed checkpoint cadence (and at the last step), what a restart resumes from; "
        "None: with every eval; 0: never, a restart starts over (a checkpoint is ~14 bytes per parameter: ~1 TB at 70B)",
    )
    checkpoints_to_keep: int = Field(1, ge=1, description="newest checkpoints kept per trial; older ones are deleted")
    gradient_clipping: float = Field(1.0, ge=0, description="max global grad norm; 0 disables (paper: 1.0)")


class DeepSpeedConfig(ConfigModel):
    preset: Literal[DEEPSPEED_PRESETS] = Field(
        "zero2", description="ZeRO stage, and offload of optimizer state (and params for zero3) to CPU"
    )


class ResourcesConfig(ConfigModel):
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel ranks) per trial")
    use_gpu: bool = Field(False, description="one GPU per worker")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved per worker")
    max_failures: int = Field(
        1,
        ge=0,
        description="restarts from the last checkpoint: of the worker group, or (a one-worker trial trained "
        "in its Tune trial's process) Tune's retries of the trial",
    )
    single_worker: Literal["in_trial", "worker_group"] = Field(
        "in_trial",
        description="where a study's one-worker trial trains: in its Tune trial's process (in_trial: "
        "~1 s to the first step once the process has run a trial) or in a Ray Train worker group of "
        "its own (worker_group: ~11 s); trials of several workers always get a worker group",
    )


class TrialConfig(ConfigModel):
    seed: int = Field(0, ge=0, description="seed of model init and batch order")
    model: ModelConfig = Field(default_factory=ModelConfig)
    quantum: QuantumConfig = Field(default_factory=QuantumConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        problems = []
        train, workers = self.train, self.resources.num_workers
        if not touches(unchecked, "train.global_batch_size", "train.micro_batch_size", "resources.num_workers"):
            per_step = train.micro_batch_size * workers
            if train.global_batch_size % per_step:
                problems.append(
                    (
                        "train.global_batch_size",
                        "must be a multiple of train.micro_batch_size x "
                        f"resources.num_workers = {train.micro_batch_size} x {workers} = {per_step}, "
                        f"got {train.global_batch_size}",
                    )
                )
        model = self.model
        if not touches(unchecked, "model.path", "model.num_hidden_layers"):
            if model.path is not None and model.num_hidden_layers is not None:
                problems.append(
                    (
                        "model.num_hidden_layers",
                        "overrides a preset's depth; it cannot apply to a "
                        "checkpoint loaded from model.path, got num_hidden_layers="
                        f"{model.num_hidden_layers} with path={model.path!r}",
                    )
                )
        if not touches(unchecked, "data.task", "data.train_path"):
            if self.data.task == "gsm8k" and self.data.train_path is None:
                problems.append(
                    (
                        "data.train_path",
                        "required for data.task gsm8k: a JSONL file or a saved HF dataset directory, got None",
                    )
                )
        return problems

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.train.global_batch_size // (self.train.micro_batch_size * self.resources.num_workers)


# Checks of a trial that need this machine's files (``qstudy.train.check_paths``): the
# caller passes them in, so config stays below train and still reports every problem at once.
PathCheck = Callable[[TrialConfig, str, str], list[str]]


def load_trial_config(path: str | Path, check_paths: PathCheck | None = None) -> TrialConfig:
    """Loads and validates a trial YAML file (``qstudy train FILE``); raises one ConfigError
    listing every problem.

    Args:
        path: the trial YAML.
        check_paths: checks of the data files and model checkpoint on this machine
            (``qstudy.train.check_paths``), reported with the file's other problems; None
            to validate a cluster trial on a laptop.
    """
    data = load_yaml(path)
    try:
        trial, lines = TrialConfig.model_validate(data), []
    except ValidationError:
        trial, problems, _ = validate_partial(TrialConfig, data)
        lines = [format_line(path, key, message) for key, message in problems]
    if check_paths and trial is not None:
        lines += check_paths(trial, str(path), "")
    if lines:
        raise ConfigError(lines)
    return trial

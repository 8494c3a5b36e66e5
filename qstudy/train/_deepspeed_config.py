"""DeepSpeed presets: the ``deepspeed.preset`` names of a trial config as DeepSpeed configs."""

from __future__ import annotations

from typing import Any

from qstudy.config import TrialConfig

__all__ = ["WHOLE_GROUP_SUB_GROUP_SIZE", "deepspeed_config", "needs_whole_zero3_groups", "zero_stage"]

# A ZeRO-3 sub_group_size above any partition: one sub-group (one optimizer call) per param group.
WHOLE_GROUP_SUB_GROUP_SIZE = 10**12


def zero_stage(preset: str) -> int:
    return int(preset[len("zero")])


def needs_whole_zero3_groups(trial: TrialConfig) -> bool:
    """Whether ZeRO-3 must step each param group in one optimizer call.

    ZeRO-3 steps a group's sub-groups one after another. The ``circuit`` response over
    ``scope: all`` reads the n_qubits coordinates of a block together, as they are at the
    start of the step; a block split by a sub-group boundary would mix coordinates
    already stepped with ones not yet stepped (``bind_deepspeed`` refuses such a split).
    Every other response is per coordinate (``sin``, the seeded ``gaussian``), or reads
    only the first n_qubits coordinates (``scope: leading``), which the first sub-group
    holds whole (it closes only past DeepSpeed's 1e9 elements), so DeepSpeed's
    sub-groups are safe for them. λ = 0 is not an exception: ``bind_deepspeed`` checks
    the split whatever λ, and a searched λ must not change the config's memory.
    """
    optimizer = trial.optimizer
    return optimizer.response == "circuit" and optimizer.scope == "all"


def deepspeed_config(trial: TrialConfig, use_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config of a trial.

    bf16 on GPU and fp32 on CPU unless ``model.dtype`` says otherwise (bf16 is about 2x
    slower than fp32 on CPU); the client optimizer is SuperpositionalAdamW, so
    ``zero_allow_untested_optimizer`` and, for offload, ``zero_force_ds_cpu_optimizer:
    false`` (docs/stack-notes.md#accelerator-and-client-optimizer-flags).
    """
    preset = trial.deepspeed.preset
    stage = zero_stage(preset)
    dtype = trial.model.dtype
    bf16 = dtype == "bfloat16" or (dtype == "auto" and use_gpu)
    zero: dict[str, Any] = {"stage": stage}
    if stage == 3 and needs_whole_zero3_groups(trial):
        # One sub-group per param group, so a circuit block never spans two optimizer
        # calls. The price: the optimizer step's fp32 gradient and temporaries are the
        # size of the whole partition instead of DeepSpeed's default sub-group (1e9
        # elements), which `qstudy plan` counts.
        zero["sub_group_size"] = WHOLE_GROUP_SUB_GROUP_SIZE
    if preset.endswith("_offload"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
    return {
        "train_batch_size": trial.train.global_batch_size,
        "train_micro_batch_size_per_gpu": trial.train.micro_batch_size,
        "gradient_accumulation_steps": trial.gradient_accumulation_steps,
        "gradient_clipping": trial.train.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }

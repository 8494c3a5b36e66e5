from qstudy.config import TrialConfig
from qstudy.train import deepspeed_config


def _trial(preset, **train):
    return TrialConfig.model_validate({"deepspeed": {"preset": preset}, "train": train or {}})


def test_presets_map_to_zero_stages_and_offload():
    for preset, stage in [("zero0", 0), ("zero1", 1), ("zero2", 2), ("zero3", 3)]:
        cfg = deepspeed_config(_trial(preset), use_gpu=False)
        assert cfg["zero_optimization"]["stage"] == stage
        assert "offload_optimizer" not in cfg["zero_optimization"]
    off2 = deepspeed_config(_trial("zero2_offload"), use_gpu=False)["zero_optimization"]
    assert off2["offload_optimizer"]["device"] == "cpu" and "offload_param" not in off2
    off3 = deepspeed_config(_trial("zero3_offload"), use_gpu=True)["zero_optimization"]
    assert off3["offload_param"] == {"device": "cpu", "pin_memory": True}


def test_batches_clipping_and_dtype():
    cfg = deepspeed_config(
        _trial("zero2", global_batch_size=16, micro_batch_size=2, gradient_clipping=0.5), use_gpu=False
    )
    assert (cfg["train_batch_size"], cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"]) == (
        16,
        2,
        8,
    )
    assert cfg["gradient_clipping"] == 0.5
    assert cfg["bf16"]["enabled"] is False  # fp32 on CPU
    assert deepspeed_config(_trial("zero2"), use_gpu=True)["bf16"]["enabled"] is True
    assert cfg["zero_allow_untested_optimizer"] and cfg["zero_force_ds_cpu_optimizer"] is False


def test_zero3_keeps_whole_groups_only_for_the_circuit_over_all():
    """DeepSpeed's default sub_group_size (the key left out) bounds the optimizer step's
    fp32 buffer; one sub-group per param group only where a circuit block could
    otherwise straddle two optimizer calls."""

    def zero(**optimizer):
        trial = TrialConfig.model_validate({"deepspeed": {"preset": "zero3"}, "optimizer": optimizer})
        return deepspeed_config(trial, use_gpu=True)["zero_optimization"]

    for response, scope in [
        ("sin", "leading"),
        ("sin", "all"),
        ("gaussian", "all"),
        ("circuit", "leading"),
        ("none", "all"),
    ]:
        assert "sub_group_size" not in zero(response=response, scope=scope), (response, scope)
    assert zero(response="circuit", scope="all")["sub_group_size"] == 10**12
    assert (
        zero(response="circuit", scope="all", quantum_weight=0.0)["sub_group_size"] == 10**12
    )  # bind checks it anyway

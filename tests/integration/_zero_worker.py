"""One rank of ``test_deepspeed_zero.py``: every ZeRO configuration, one engine each.

Run as ``python _zero_worker.py OUT`` with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
set (the test starts two). Rank 0 writes ``{config name: result}`` to OUT with
``torch.save``. The model, the data and the configurations live here so that the test's
single-process reference uses exactly the same ones; deepspeed is imported only inside
:func:`main` and :func:`_run`, never by the test process (docs/stack-notes.md#importing-deepspeed-in-the-driver, https://github.com/ray-project/ray/issues/50406).
"""

from __future__ import annotations

import sys
import traceback

import torch
from torch import nn

STEPS = 10
GLOBAL_BATCH = 8
WORLD_SIZE = 2
LR = 1e-2
QUANTUM_WEIGHT = 0.5
N_QUBITS = 3
CIRCUIT_DEPTH = 2

# The optimizer variants of every fp32 stage: scope × response.
VARIANTS = [
    dict(scope=scope, response=response) for scope in ("leading", "all") for response in ("sin", "circuit", "gaussian")
]

_OFFLOAD = {"offload_optimizer": {"device": "cpu", "pin_memory": False}}
# ZeRO settings per stage. The model's sizes (see Net) put partition boundaries inside
# parameters and (test_some_circuit_block_straddles_ranks) inside n_qubits-blocks;
# parameter_alignment pads parameters inside the flat buffer and round_robin_gradients
# reorders them, and the coordinate mapping must see through both. ZeRO-3 with
# persistence threshold 0 partitions every parameter; the offload run is the
# zero3_offload preset (optimizer and parameters on CPU) with the default threshold, so
# there the small parameters stay gathered for the forward (persistent) but are still
# partitioned for the optimizer. sub_group_size=40 splits group 0 into two ZeRO-3
# sub-groups (stepped one after the other) at coordinate 93, a multiple of n_qubits,
# so circuit blocks stay whole.
STAGES = {
    "zero0": {"stage": 0},
    "zero1": {"stage": 1, "round_robin_gradients": True, "parameter_alignment": True},
    "zero2": {"stage": 2},
    "zero2-aligned": {"stage": 2, "round_robin_gradients": True, "parameter_alignment": True},
    "zero2-offload": {"stage": 2, "round_robin_gradients": True, "parameter_alignment": True, **_OFFLOAD},
    "zero3": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "zero3-subgroups": {"stage": 3, "stage3_param_persistence_threshold": 0, "sub_group_size": 40},
    "zero3-offload": {"stage": 3, **_OFFLOAD, "offload_param": {"device": "cpu", "pin_memory": False}},
}


def configs() -> dict[str, dict]:
    """Every run, keyed by name: ``{zero, scope, response, bind, bf16}``.

    Besides the fp32 stage × variant grid (compared with the 1-process reference):
    ``unbound`` leaves out bind_deepspeed, a control that must NOT match (the comparison
    can fail); the ``bf16`` runs check only the layouts bind_deepspeed declares and that
    training runs, for the wrappers a bf16 model brings (ZeRO-0: FP16_UnfusedOptimizer;
    ZeRO-1 with fp32 gradient accumulation: BF16_Optimizer; ZeRO-2:
    DeepSpeedZeroOptimizer), as a bf16 model cannot match an fp32 run to fp32 tolerance.
    """
    out = {}
    for stage, zero in STAGES.items():
        for variant in VARIANTS:
            name = f"{stage}/{variant['scope']}/{variant['response']}"
            out[name] = dict(zero=zero, bind=True, bf16=False, **variant)
    out["zero2/leading/sin/unbound"] = dict(
        zero=STAGES["zero2"], scope="leading", response="sin", bind=False, bf16=False
    )
    for stage in ("zero0", "zero1", "zero2"):
        out[f"bf16-{stage}/all/circuit"] = dict(
            zero={"stage": int(stage[-1])}, scope="all", response="circuit", bind=True, bf16=True
        )
    return out


class Net(nn.Module):
    """A 2-element parameter first, so the n_qubits=3 leading coordinates span two
    parameters (and, under ZeRO-3, both ranks); then sizes 91, 7, 35 and 5, which no
    power of two divides, so ZeRO pads and splits them mid-parameter."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([0.9, 0.2]))
        self.fc1 = nn.Linear(13, 7)
        self.fc2 = nn.Linear(7, 5)

    def forward(self, x):  # x: [b, 13]
        return self.fc2(torch.tanh(self.fc1(x))) * self.gain[0] + self.gain[1]  # [b, 5]


def build_model() -> Net:
    torch.manual_seed(0)
    return Net()


def param_groups(model: Net) -> list[dict]:
    """Two groups, so coordinates restart per group: 100 and 40 coordinates."""
    return [
        {"params": [model.gain, model.fc1.weight, model.fc1.bias], "weight_decay": 0.01},
        {"params": [model.fc2.weight, model.fc2.bias], "weight_decay": 0.1},
    ]


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(GLOBAL_BATCH, 13, generator=generator), torch.randn(GLOBAL_BATCH, 5, generator=generator))
        for _ in range(STEPS)
    ]


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # A mean: DeepSpeed's average of the ranks' gradients is the global batch's gradient.
    return torch.nn.functional.mse_loss(output, target)


def optimizer_kwargs(scope: str, response: str, quantum_weight: float = QUANTUM_WEIGHT) -> dict:
    return dict(
        lr=LR,
        quantum_weight=quantum_weight,
        n_qubits=N_QUBITS,
        circuit_depth=CIRCUIT_DEPTH,
        response=response,
        scope=scope,
        seed=7,
    )


def ds_config(zero: dict, bf16: bool = False) -> dict:
    config = {
        "train_batch_size": GLOBAL_BATCH,
        "train_micro_batch_size_per_gpu": GLOBAL_BATCH // WORLD_SIZE,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # ZeRO-Offload with the client optimizer
        "steps_per_print": 10**9,
    }
    if bf16:
        config["bf16"] = {"enabled": True}
        if zero["stage"] > 0:  # fp32 gradient accumulation makes bf16 ZeRO-1 use BF16_Optimizer
            config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def _layout_report(client, model_init: list[torch.Tensor], rtol: float = 0.0) -> dict:
    """Checks every bound partition against the model's initial values.

    Returns ``{"mismatches": n, "owners": [[group, coordinate, rank], ...]}``: a
    segment whose values differ (beyond ``rtol``; exactly if 0) from the group's
    flattened initial parameters at the coordinates it claims counts as a mismatch.
    """
    import torch.distributed as dist

    rank = dist.get_rank()
    mismatches, owners = 0, []
    for tensor, layout in client._bound.values():  # noqa: SLF001 - the layouts bind_deepspeed declared
        flat = tensor.detach().view(-1).float().cpu()
        for seg in layout.segments:
            local = flat[seg.local_start : seg.local_start + seg.length]
            expected = model_init[layout.group][seg.global_start : seg.global_start + seg.length]
            same = torch.allclose(local, expected, rtol=rtol, atol=0.0) if rtol else torch.equal(local, expected)
            if not same:
                mismatches += 1
            owners.extend([layout.group, c, rank] for c in range(seg.global_start, seg.global_start + seg.length))
    return {"mismatches": mismatches, "owners": owners}


def _run(name: str, cfg: dict, rows: slice) -> dict:
    """Trains one configuration with DeepSpeed; returns this rank's view of the result."""
    import deepspeed
    import torch.distributed as dist

    from qstudy.optim import SuperpositionalAdamW, bind_deepspeed

    model = build_model()
    model_init = [torch.cat([p.detach().reshape(-1) for p in g["params"]]) for g in param_groups(model)]
    if cfg["bf16"]:
        model_init = [t.bfloat16().float() for t in model_init]  # what the fp32 partitions start from
    optimizer = SuperpositionalAdamW(param_groups(model), **optimizer_kwargs(cfg["scope"], cfg["response"]))
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config(cfg["zero"], cfg["bf16"]))
    try:
        layouts = {"mismatches": 0, "owners": []}
        if cfg["bind"]:
            if bind_deepspeed(engine) is not optimizer:
                raise RuntimeError(f"{name}: bind_deepspeed did not return the client optimizer")
            # bf16 ZeRO-0's FP16_UnfusedOptimizer steps the client once with zero gradients
            # when it is built (initialize_optimizer_states): weight decay has already
            # scaled its fp32 copies by 1 - lr·weight_decay >= 1 - 1e-3 here.
            rtol = 2e-3 if cfg["bf16"] and cfg["zero"]["stage"] == 0 else 0.0
            layouts = _layout_report(optimizer, model_init, rtol)
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, layouts)

        dtype = torch.bfloat16 if cfg["bf16"] else torch.float32
        for x, y in batches():
            loss = loss_fn(engine(x[rows].to(dtype)).float(), y[rows])
            engine.backward(loss)
            engine.step()

        params = list(engine.module.named_parameters())
        if cfg["zero"]["stage"] == 3:
            with deepspeed.zero.GatheredParameters([p for _, p in params]):
                final = {n: p.detach().float().clone() for n, p in params}
        else:
            final = {n: p.detach().float().clone() for n, p in params}
        return {
            "params": final,
            "wrapper": type(engine.optimizer).__name__,
            "mismatches": sum(g["mismatches"] for g in gathered),
            "owners": [row for g in gathered for row in g["owners"]],
        }
    finally:
        engine.destroy()


def main(out_path: str) -> None:
    import deepspeed  # only here: see the module docstring
    import torch.distributed as dist

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != WORLD_SIZE:
        raise RuntimeError(f"_zero_worker expects WORLD_SIZE={WORLD_SIZE}, got {world}")
    rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)  # this rank's half
    results = {}
    for name, cfg in configs().items():
        try:
            result = _run(name, cfg, rows)
        except Exception:  # noqa: BLE001 - recorded, so one broken config does not hide the others
            result = {"error": traceback.format_exc()}
        if rank == 0:
            results[name] = result
        dist.barrier()
    if rank == 0:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

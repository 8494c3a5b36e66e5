"""One process of ``test_eval_matches_a_fresh_model.py``: a DeepSpeed engine trains a
quantum-attention Llama, then its no-grad eval loss and greedy generation are compared
with those of a freshly built model loaded with the engine's weights.

Run as ``python _fresh_eval_worker.py PRESET OUT`` (PRESET: zero0, zero2 or zero3) with
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set for a world of one. Writes a JSON of
both sides' numbers to OUT. deepspeed is imported here only, never by the test process.
"""

from __future__ import annotations

import json
import sys

import torch

STEPS = 5
LR = 0.2  # large, so the circuit angles move visibly in 5 steps
GATE = 3.0  # gates start at 0 in real trials; set high so a stale Φ shows in the loss


def main(preset: str, out_path: str) -> None:
    import deepspeed
    import torch.distributed as dist

    from qstudy.config import TrialConfig
    from qstudy.models import attention_modules, build_model
    from qstudy.optim import SuperpositionalAdamW, bind_deepspeed
    from qstudy.train import build_trial_data
    from qstudy.train._deepspeed_config import deepspeed_config

    dist.init_process_group("gloo")
    trial = TrialConfig.model_validate(
        {
            "model": {"preset": "llama-tiny"},
            "quantum": {"enabled": True, "n_qubits": 3, "circuit_depth": 2},
            "optimizer": {"lr": LR, "quantum_weight": 0.5, "weight_decay": 0.0},
            "data": {
                "task": "synthetic_gsm8k",
                "train_examples": 64,
                "eval_examples": 8,
                "generate_examples": 2,
                "max_new_tokens": 6,
                "max_tokens": 160,
            },
            "train": {"max_steps": STEPS, "global_batch_size": 4, "micro_batch_size": 4},
            "deepspeed": {"preset": preset},
        }
    )
    task = build_trial_data(trial)
    ds_config = deepspeed_config(trial, use_gpu=False)
    torch.manual_seed(0)
    model = build_model(trial, task, deepspeed_config=ds_config)
    quantum = [m for m in attention_modules(model).values() if hasattr(m, "quantum_gate")]
    with deepspeed.zero.GatheredParameters([m.quantum_gate for m in quantum], modifier_rank=0):
        for module in quantum:
            module.quantum_gate.data.fill_(GATE)
    optimizer = SuperpositionalAdamW(
        [p for p in model.parameters() if p.requires_grad], **trial.optimizer.optimizer_kwargs()
    )
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config, dist_init_required=False)
    bind_deepspeed(engine)

    def angles():
        with deepspeed.zero.GatheredParameters([m.quantum_a for m in quantum]):
            return torch.cat([m.quantum_a.detach().flatten().clone() for m in quantum])

    engine.eval()
    before = evaluate(engine, task)  # the series cache is filled here, with step 0's angles
    angles_before = angles()
    engine.train()
    for step in range(1, STEPS + 1):
        for micro in task.micro_batches(step, 0, 1):
            engine.backward(engine(**micro).loss)
            engine.step()
    engine.eval()
    trained = evaluate(engine, task)
    moved = float((angles() - angles_before).abs().max())

    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        weights = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    fresh_trial = trial.model_copy(update={"deepspeed": trial.deepspeed.model_copy(update={"preset": "zero0"})})
    fresh = build_model(fresh_trial, task)  # built whole, no DeepSpeed
    fresh.load_state_dict(weights)
    fresh.eval()
    reference = evaluate(fresh, task)
    with open(out_path, "w") as f:
        json.dump({"before": before, "trained": trained, "fresh": reference, "angles_moved": moved}, f)
    dist.destroy_process_group()


@torch.no_grad()
def evaluate(model, task) -> dict:
    """Eval loss through the worker loop's own sums, and greedy continuations."""
    from qstudy.train._worker import eval_sums

    loss_sum, scored, _, _ = eval_sums(model, task, 0, 1, torch.device("cpu"))
    module = getattr(model, "module", model)
    generated = []
    for prompt_ids, _ in task.problems:
        ids = torch.tensor([prompt_ids])
        out = module.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=task.max_new_tokens,
            do_sample=False,
            pad_token_id=task.pad_token_id,
            eos_token_id=task.eos_token_id,
        )
        generated.append(out[0, ids.shape[1] :].tolist())
    logits = module(input_ids=torch.tensor([task.problems[0][0]])).logits
    return {"eval_loss": loss_sum / scored, "generated": generated, "logits_sum": float(logits.double().sum())}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

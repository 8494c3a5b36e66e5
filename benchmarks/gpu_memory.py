"""Measured per-GPU memory of the scaling presets next to `qstudy plan`'s estimate.

    .venv/bin/python benchmarks/gpu_memory.py [--space search_spaces/scaling_llama.yaml]
        [--case llama-3.2-1b:zero3 ...] [--set train.micro_batch_size=4 ...] [--steps 3]
        [--no-compile] [--plan-only] [--json FILE]

Each case is the study file's fixed trial with ``model.preset`` and ``deepspeed.preset``
set, run to the end as a real trial (Ray Train, DeepSpeed, quantum attention,
SuperpositionalAdamW) on ONE GPU (``resources.num_workers: 1``), at the paper's circuit
(4 qubits, depth 2, λ = 0.5). The synthetic GSM8K-format task stands in for the files:
batches are padded to exactly ``data.max_tokens`` either way, so memory is the same.

Prints, per case: parameters, the planner's per-GPU estimate for one GPU,
the measured ``torch.cuda.max_memory_allocated`` over the whole run (evaluation
included), and measured / planned. Needs a CUDA GPU unless ``--plan-only``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ["llama-3.2-1b:zero3", "llama-3.2-1b:zero3_offload", "llama-3.2-3b:zero3"]


def case_trial(study, preset: str, deepspeed_preset: str, steps: int, compile_attention: bool, extra: dict):
    """The study's fixed trial as one case on one GPU; ``extra`` (``--set``) applies last."""
    from qstudy.config import apply_overrides

    values = {
        "model.preset": preset,
        "deepspeed.preset": deepspeed_preset,
        "quantum.n_qubits": 4,
        "quantum.circuit_depth": 2,
        "quantum.compile": compile_attention,
        "optimizer.quantum_weight": 0.5,
        "optimizer.warmup_steps": 0,
        "data.task": "synthetic_gsm8k",
        "data.train_path": None,
        "data.eval_path": None,
        "data.train_examples": 64,
        "data.eval_examples": 4,
        "data.generate_examples": 0,
        "train.max_steps": steps,
        "train.eval_every_steps": steps,
        "train.log_every_steps": 1,
        "train.checkpoint_every_steps": 0,  # no 17-45 GB DeepSpeed checkpoint to write
        "resources.num_workers": 1,
        "resources.max_failures": 0,
        **extra,
    }
    micro = values.get("train.micro_batch_size", study.trial.train.micro_batch_size)
    values.setdefault("train.global_batch_size", 4 * micro)  # 4 accumulation steps
    return apply_overrides(study.trial, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "scaling_llama.yaml"))
    parser.add_argument(
        "--case", action="append", help="PRESET:DEEPSPEED_PRESET (repeatable); default: " + ", ".join(DEFAULT_CASES)
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="quantum.compile: false (the file's value otherwise)")
    parser.add_argument("--plan-only", action="store_true", help="print the planned column only; no GPU needed")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trial override for every case, e.g. train.micro_batch_size=4",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    import torch
    import yaml

    from qstudy.config import load_study_config
    from qstudy.plan import estimate_memory

    study = load_study_config(args.space, check_paths=None)
    extra = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    cuda = torch.cuda.is_available()
    if not cuda and not args.plan_only:
        raise SystemExit("gpu_memory.py measures GPU memory and found no CUDA GPU; --plan-only prints the plan alone")
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else 80.0
    gpu_name = torch.cuda.get_device_name(0) if cuda else "no GPU (plan for 80 GiB)"
    compile_attention = study.trial.quantum.compile and not args.no_compile
    print(
        f"{datetime.date.today()} {platform.node()}, {gpu_name} ({gpu_gib:.0f} GiB), torch {torch.__version__}; "
        f"{Path(args.space).name} trial, micro batch {study.trial.train.micro_batch_size} x {study.trial.data.max_tokens} tokens"
        f"{''.join(f', {item}' for item in args.set)}, "
        f"{study.trial.model.dtype}, quantum.compile={compile_attention}, {args.steps} steps"
    )
    storage = tempfile.mkdtemp(prefix="qstudy-gpu-memory-")
    rows = []
    for case in args.case or DEFAULT_CASES:
        preset, _, deepspeed_preset = case.partition(":")
        trial = case_trial(
            study, preset, deepspeed_preset or study.trial.deepspeed.preset, args.steps, compile_attention, extra
        )
        plan = estimate_memory(trial, gpus_per_node=1, gpu_memory_gib=gpu_gib)
        row = {
            "case": case + "".join(f" {key}={value}" for key, value in extra.items()),
            "params": plan.params,
            "planned_model_states_gib": plan.model_states_gib,
            "planned_activations_gib": plan.activations_gib,
            "planned_optimizer_step_gib": plan.optimizer_step_gib,
            "planned_gib": plan.total_gib,
            "planned_cpu_gib": plan.cpu_gib_per_node,
            "fits": plan.fits,
        }
        if not args.plan_only:
            from qstudy.train import init_ray, run_trial, worker_env

            init_ray(env=worker_env(trial))
            t = time.time()
            outcome = run_trial(trial, name=f"{case.replace(':', '-')}-{len(rows)}", storage_path=storage)
            metrics = outcome["metrics"]
            row.update(status=outcome["status"], wall_s=time.time() - t, error=metrics.get("error"))
            if outcome["status"] == "completed":
                row.update(
                    measured_gib=metrics["gpu_max_memory_allocated_gib"],
                    step_time_s=metrics.get("step_time_s"),
                    model_parameters=metrics["model_parameters"],
                )
        rows.append(row)
        _print_row(row)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))


def _print_row(row: dict) -> None:
    line = (
        f"{row['case']:28s}  params {row['params'] / 1e9:6.3f}B  planned {row['planned_gib']:7.2f} GiB "
        f"({row['planned_model_states_gib']:.2f} states + max({row['planned_activations_gib']:.2f} act., "
        f"{row['planned_optimizer_step_gib']:.2f} opt. step); host {row['planned_cpu_gib']:.0f} GiB)"
    )
    if "status" in row:
        if row["status"] == "completed":
            assert row["model_parameters"] == row["params"], row  # the worker built what the planner counted
            line += (
                f"  measured {row['measured_gib']:7.2f} GiB  measured/planned {row['measured_gib'] / row['planned_gib']:.2f}"
                f"  step {row['step_time_s']:.2f} s  trial {row['wall_s']:.0f} s"
            )
        else:
            line += f"  {row['status']}: {(row['error'] or '')[:400]}"
    print(line, flush=True)


if __name__ == "__main__":
    main()

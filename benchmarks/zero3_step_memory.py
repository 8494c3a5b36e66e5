"""Host memory (RSS) of a 2-rank ZeRO-3 optimizer step on CPU, per ``sub_group_size``.

    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/zero3_step_memory.py \
        [--sub-group-size 1e12 --sub-group-size default --sub-group-size 5e7] [--layers 2] [--steps 1] [--tokens 8]

What ``qstudy plan`` budgets as ZeRO-3's optimizer-step term: each case starts two gloo
ranks (no Ray) that build the llama-3.2-1b shapes at ``--layers`` layers with qstudy's
own ``build_model`` and ``deepspeed_config`` (zero3, bf16 as on a GPU, 1 x ``--tokens``,
the default optimizer: ``sin`` on the leading coordinates, λ = 0.5), with only
``zero_optimization.sub_group_size`` changed ("default": the key left out, DeepSpeed's
1e9), and train ``--steps`` steps (ZeRO-3 allocates Adam's state in ``initialize``, so
the first step is representative; the tokens only set the compute: bf16 on a 2-core CPU
is slow). Every step, each rank reads its peak RSS (``VmHWM``,
reset through ``/proc/self/clear_refs`` before each phase) in the forward + backward
and in ``engine.step()``, and the RSS just before the step; "step adds" is the step's
peak minus that. Printed per case: the process RSS peak of each rank over the whole run,
what the last step added on each rank, and the planner's optimizer-step term for the
same sub-group size. ``MALLOC_MMAP_THRESHOLD_`` is fixed at 64 KiB in the ranks so that
freed tensors go back to the OS and RSS follows the live tensors.

A guard stops a case (both ranks) if the machine's available memory falls under
``--min-available-gib``: a case needs about 6 GiB per rank at 2 layers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
WORLD_SIZE = 2


def _trial(layers: int, tokens: int = 8):
    from qstudy.config import TrialConfig

    return TrialConfig.model_validate(
        {
            "model": {"preset": "llama-3.2-1b", "num_hidden_layers": layers, "dtype": "bfloat16"},
            "quantum": {"enabled": False},
            "deepspeed": {"preset": "zero3"},
            "resources": {"num_workers": WORLD_SIZE},
            "train": {"micro_batch_size": 1, "global_batch_size": WORLD_SIZE, "gradient_clipping": 1.0},
            "data": {"max_tokens": tokens},
        }
    )


def _status_mib(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def _rank(out_path: str, layers: int, steps: int, tokens: int, sub_group_size: str) -> None:
    """One rank: build, train ``steps`` steps, write this rank's phases as JSON."""
    import deepspeed
    import torch
    import torch.distributed as dist

    from qstudy.models import build_model
    from qstudy.optim import SuperpositionalAdamW, bind_deepspeed
    from qstudy.train import deepspeed_config

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo")
    trial = _trial(layers, tokens)
    config = deepspeed_config(trial, use_gpu=False)
    zero = config["zero_optimization"]
    zero.pop("sub_group_size", None)
    if sub_group_size != "default":
        zero["sub_group_size"] = int(float(sub_group_size))
    torch.manual_seed(0)
    task = type(
        "TrialData",
        (),
        dict(kind="causal_lm", vocab_size=128256, pad_token_id=128001, bos_token_id=128000, eos_token_id=128001),
    )()
    model = build_model(trial, task, deepspeed_config=config)
    optimizer = SuperpositionalAdamW(
        [p for p in model.parameters() if p.requires_grad], **trial.optimizer.optimizer_kwargs()
    )
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config, dist_init_required=False)
    bind_deepspeed(engine)
    wrapper = engine.optimizer
    sub_groups = [sum(int(p.partition_numel()) for p in group) for group in wrapper.fp16_groups]
    phases = {"after_init_mib": _status_mib("VmRSS"), "init_peak_mib": _status_mib("VmHWM"), "steps": []}
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 128000, (1, tokens), generator=generator)
        _reset_peak()
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        backward_peak, before_step = _status_mib("VmHWM"), _status_mib("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        engine.step()
        phases["steps"].append(
            dict(
                loss=float(loss),
                backward_peak_mib=backward_peak,
                before_step_mib=before_step,
                step_peak_mib=_status_mib("VmHWM"),
                step_s=time.perf_counter() - start,
            )
        )
    phases.update(rank=dist.get_rank(), sub_groups=sub_groups, params=sum(int(p.ds_numel) for p in model.parameters()))
    Path(f"{out_path}.rank{dist.get_rank()}").write_text(json.dumps(phases))
    dist.barrier()
    engine.destroy()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _available_gib() -> float:
    return int(re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) / 2**20


def _run_case(
    sub_group_size: str, layers: int, steps: int, tokens: int, min_available_gib: float, timeout_s: float
) -> list[dict]:
    out = Path(tempfile.mkdtemp(prefix="qstudy-zero3-step-")) / "phases"
    env = dict(
        os.environ,
        DS_ACCELERATOR="cpu",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_SIZE=str(WORLD_SIZE),
        OMP_NUM_THREADS="1",
        MALLOC_MMAP_THRESHOLD_=str(64 * 1024),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    command = [
        sys.executable,
        __file__,
        "--rank-of",
        str(out),
        "--layers",
        str(layers),
        "--steps",
        str(steps),
        "--tokens",
        str(tokens),
        "--sub-group-size",
        sub_group_size,
    ]
    procs = [subprocess.Popen(command, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(WORLD_SIZE)]
    deadline, lowest = time.monotonic() + timeout_s, _available_gib()
    try:
        while any(p.poll() is None for p in procs):
            lowest = min(lowest, _available_gib())
            if lowest < min_available_gib or time.monotonic() > deadline or any(p.poll() for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:  # only the ranks started above
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    if codes != [0] * WORLD_SIZE:
        raise SystemExit(
            f"sub_group_size={sub_group_size}: ranks exited {codes} (lowest available memory "
            f"{lowest:.1f} GiB, guard {min_available_gib} GiB, timeout {timeout_s} s)"
        )
    return [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(WORLD_SIZE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sub-group-size",
        action="append",
        help="a number or 'default' (repeatable); default: 1e12 (whole partition), default (DeepSpeed's 1e9), 5e7",
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--min-available-gib", type=float, default=1.5)
    parser.add_argument("--timeout-s", type=float, default=2400, help="per case")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--rank-of", help=argparse.SUPPRESS)  # internal: run as one rank, write phases here
    args = parser.parse_args()
    if args.rank_of:
        _rank(args.rank_of, args.layers, args.steps, args.tokens, args.sub_group_size[0])
        return

    import torch

    from qstudy.plan import _model_sizes, largest_zero3_sub_group

    numels, _ = _model_sizes(_trial(args.layers).model)
    print(
        f"{datetime.date.today()} {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"llama-3.2-1b shapes x {args.layers} layers ({sum(numels) / 1e6:.1f}M params), zero3 bf16, "
        f"{WORLD_SIZE} gloo ranks, 1 x {args.tokens} tokens, {args.steps} step(s); MiB per rank",
        flush=True,
    )
    rows = []
    for size in args.sub_group_size or ["1e12", "default", "5e7"]:
        ranks = _run_case(size, args.layers, args.steps, args.tokens, args.min_available_gib, args.timeout_s)
        effective = 10**9 if size == "default" else int(float(size))
        planned = 4 * largest_zero3_sub_group(numels, WORLD_SIZE, effective) / MIB
        row = dict(
            sub_group_size=size,
            sub_groups=ranks[0]["sub_groups"],
            process_peak_mib=[
                max([r["init_peak_mib"]] + [max(s["backward_peak_mib"], s["step_peak_mib"]) for s in r["steps"]])
                for r in ranks
            ],
            step_adds_mib=[r["steps"][-1]["step_peak_mib"] - r["steps"][-1]["before_step_mib"] for r in ranks],
            backward_peak_mib=[r["steps"][-1]["backward_peak_mib"] for r in ranks],
            step_s=[round(r["steps"][-1]["step_s"], 2) for r in ranks],
            loss=[s["loss"] for s in ranks[0]["steps"]],
            planned_step_mib=planned,
        )
        rows.append(row)
        print(
            f"sub_group_size {size:>8}: {len(row['sub_groups'])} sub-group(s) per rank, largest "
            f"{max(row['sub_groups']) / 1e6:.1f}M; process RSS peak "
            f"{' / '.join(f'{v:.0f}' for v in row['process_peak_mib'])}; last step adds "
            f"{' / '.join(f'{v:.0f}' for v in row['step_adds_mib'])} (planned {planned:.0f}); backward peak "
            f"{' / '.join(f'{v:.0f}' for v in row['backward_peak_mib'])}; step {row['step_s']} s",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

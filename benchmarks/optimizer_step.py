"""Optimizer step time of SuperpositionalAdamW as a ratio to torch's fused AdamW.

    .venv/bin/python benchmarks/optimizer_step.py [--sizes 10e6 100e6] [--threads 1] [--reps 15]

Every contender steps the same parameters and gradients (each with its own state),
interleaved round by round, so drift in the machine's speed hits all of them alike.
Prints medians with the interquartile range, and each median over fused AdamW's.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from qstudy.optim import SuperpositionalAdamW


def _params(total: int, flat: bool) -> list[torch.nn.Parameter]:
    """One flat tensor (what the optimizer steps under DeepSpeed ZeRO), or a Llama-like
    list: square matrices of 1024² and a few norm vectors."""
    sizes, left = ([total], 0) if flat else ([], total)
    while left > 0:
        sizes.append(min(1024 * 1024, left))
        left -= sizes[-1]
        if left > 0:
            sizes.append(min(1024, left))
            left -= sizes[-1]
    return params_of_sizes(sizes)


def params_of_sizes(sizes: list[int]) -> list[torch.nn.Parameter]:
    """1-D parameters of these sizes, initialised like a model's, each with a gradient."""
    params = [torch.nn.Parameter(torch.randn(n) * 0.02) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def _contenders(params, include_circuit: bool):
    hp = dict(lr=1e-4, weight_decay=0.01)
    out = {
        "fused AdamW (torch)": torch.optim.AdamW(params, **hp, fused=True),
        "foreach AdamW (torch)": torch.optim.AdamW(params, **hp, foreach=True),
        "sin, scope=leading (paper)": SuperpositionalAdamW(params, **hp, quantum_weight=0.5, scope="leading"),
        "sin, scope=all (compiled)": SuperpositionalAdamW(params, **hp, quantum_weight=0.5, scope="all"),
        "sin, scope=all (eager)": SuperpositionalAdamW(
            params, **hp, quantum_weight=0.5, scope="all", compile_step=False
        ),
    }
    if include_circuit:
        out["circuit d=2, scope=all"] = SuperpositionalAdamW(
            params, **hp, quantum_weight=0.5, scope="all", response="circuit", circuit_depth=2
        )
    return out


def bench(total: int, flat: bool, reps: int, warmup: int, include_circuit: bool, circuit_reps: int) -> None:
    params = _params(total, flat)
    contenders = _contenders(params, include_circuit)
    rounds = {name: circuit_reps for name in contenders if name.startswith("circuit")}
    times = step_times(contenders, reps, warmup, rounds)
    base = statistics.median(times["fused AdamW (torch)"])
    layout = "one flat tensor (as under ZeRO)" if flat else f"{len(params)} tensors"
    print(f"\n{total / 1e6:.0f}M parameters, {layout}, {reps} interleaved rounds")
    print(f"{'contender':32s} {'median ms':>10s} {'IQR ms':>16s} {'ratio':>7s}")
    for name, ts in times.items():
        q1, med, q3 = quartiles(ts)
        print(f"{name:32s} {med * 1e3:10.1f} {q1 * 1e3:7.1f}-{q3 * 1e3:<8.1f} {med / base:7.2f}x")


def step_times(contenders, reps: int, warmup: int, rounds: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds of each optimizer's ``step()``, interleaved round by round after ``warmup``
    untimed steps each (state allocation, compilation); ``rounds`` caps some at fewer rounds."""
    rounds = rounds or {}
    times = {name: [] for name in contenders}
    for opt in contenders.values():
        for _ in range(warmup):
            opt.step()
    for rep in range(reps):
        for name, opt in contenders.items():
            if rep >= rounds.get(name, reps):
                continue
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(ts: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return q[0], statistics.median(ts), q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[10e6, 100e6])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--circuit-reps", type=int, default=5, help="rounds that include the (slow) circuit response")
    parser.add_argument("--no-circuit", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    for size in args.sizes:
        for flat in (True, False):
            bench(int(size), flat, args.reps, args.warmup, not args.no_circuit and flat, args.circuit_reps)


if __name__ == "__main__":
    main()

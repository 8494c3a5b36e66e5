"""When compiling SuperpositionalAdamW's step pays off: per-step time eager vs compiled,
and what the compile costs a fresh process.

    .venv/bin/python benchmarks/compile_payoff.py [--sizes 1e5 1e6 1e7 1e8] [--tensors 19 191]
        [--circuit-sizes 1e5 1e6 1e7] [--compile-runs 2] [--threads 1]

1. Per step, in this process: ``response="sin", scope="all"`` with ``compile_step`` True
   and False (the same parameters and gradients, each with its own state, interleaved
   round by round), for each total size split evenly into each number of tensors; then
   ``response="circuit"`` (4 qubits, depth 2) on one flat tensor (ZeRO's case), where
   its compiled kernel takes every call of >= 16384 blocks.
2. Compile cost, in fresh processes: the first step's time less a later step's, with
   ``TORCHINDUCTOR_CACHE_DIR`` an empty folder (cold) or one a prior run filled (warm).

A compiled trial of ``steps`` steps gains ``steps × (eager − compiled)`` and pays the
compile once: qstudy.optim.compile_pays_off reads its constants from these numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from optimizer_step import params_of_sizes, quartiles, step_times

from qstudy.optim import SuperpositionalAdamW

HP = dict(lr=1e-4, weight_decay=0.01, quantum_weight=0.5, scope="all")
CIRCUIT = dict(response="circuit", n_qubits=4, circuit_depth=2)


def _sizes(total: int, tensors: int) -> list[int]:
    return [total // tensors + (i < total % tensors) for i in range(tensors)]


def _optimizer(params, response: str, compiled: bool) -> SuperpositionalAdamW:
    extra = CIRCUIT if response == "circuit" else {}
    return SuperpositionalAdamW(params, **HP, **extra, compile_step=compiled)


def per_step(response: str, total: int, tensors: int, reps: int) -> None:
    params = params_of_sizes(_sizes(total, tensors))
    contenders = {"eager": _optimizer(params, response, False), "compiled": _optimizer(params, response, True)}
    times = step_times(contenders, reps, warmup=1)
    (e1, eager, e3), (c1, compiled, c3) = quartiles(times["eager"]), quartiles(times["compiled"])
    saving = eager - compiled
    print(
        f"{response:8s} {total:10.0e} {tensors:8d} {eager * 1e3:9.2f} ({e1 * 1e3:.2f}-{e3 * 1e3:.2f}) "
        f"{compiled * 1e3:9.2f} ({c1 * 1e3:.2f}-{c3 * 1e3:.2f}) {saving * 1e3:9.2f} {saving / total * 1e9:8.2f}",
        flush=True,
    )


def compile_cost(response: str, total: int, tensors: int, runs: int, threads: int) -> None:
    """First-step overhead of fresh processes, cold cache then warm cache."""
    child = [sys.executable, __file__, "--child", response, str(total), str(tensors), "--threads", str(threads)]

    def run(cache_dir: str) -> dict:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
        out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as warm_dir:
        cold = []
        for i in range(runs):
            with tempfile.TemporaryDirectory() as cold_dir:
                cold.append(run(cold_dir))
            if i == 0:
                run(warm_dir)  # fills the warm cache
        warm = [run(warm_dir) for _ in range(runs)]
    for label, results in (("cold", cold), ("warm", warm)):
        costs = [r["compiled_first_s"] - r["compiled_step_s"] for r in results]
        eager = [r["eager_first_s"] - r["eager_step_s"] for r in results]
        print(
            f"{response:8s} {total:10.0e} {tensors:8d} {label:5s} compile {min(costs):6.2f}-{max(costs):<6.2f} s "
            f"(eager first-step overhead {min(eager):.3f}-{max(eager):.3f} s)",
            flush=True,
        )


def _child(response: str, total: int, tensors: int) -> None:
    """One fresh process's first and later step times, eager then compiled."""
    out = {}
    for label, compiled in (("eager", False), ("compiled", True)):
        params = params_of_sizes(_sizes(total, tensors))
        opt = _optimizer(params, response, compiled)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - start)
        out[f"{label}_first_s"] = times[0]
        out[f"{label}_step_s"] = statistics.median(times[1:])
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7, 1e8])
    parser.add_argument("--tensors", type=int, nargs="+", default=[19, 191])
    parser.add_argument("--circuit-sizes", type=float, nargs="*", default=[1e5, 1e6, 1e7])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--circuit-reps", type=int, default=3)
    parser.add_argument("--compile-runs", type=int, default=2, help="fresh processes per cache state")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-per-step", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("RESPONSE", "TOTAL", "TENSORS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print(
        f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    if not args.skip_per_step:
        print(
            f"\n{'response':8s} {'elements':>10s} {'tensors':>8s} {'eager ms (IQR)':>24s} "
            f"{'compiled ms (IQR)':>24s} {'saved ms':>9s} {'ns/elem':>8s}"
        )
        for size in args.sizes:
            for tensors in args.tensors:
                per_step("sin", int(size), tensors, args.reps)
        for size in args.circuit_sizes:
            per_step("circuit", int(size), 1, args.circuit_reps)
    if not args.skip_compile:
        print()
        for tensors in args.tensors:
            compile_cost("sin", int(1e6), tensors, args.compile_runs, args.threads)
        if args.circuit_sizes:
            compile_cost("circuit", int(1e5), 1, args.compile_runs, args.threads)


if __name__ == "__main__":
    main()

"""SuperpositionalAdamW as DeepSpeed's client optimizer on CPU matches a run without DeepSpeed.

docs/design.md §2: under ZeRO the optimizer steps flat fp32 partitions, and ``bind_deepspeed``
must make it perturb the same coordinates as without DeepSpeed. Two real worker processes
(``_zero_worker.py``, gloo, ``DS_ACCELERATOR=cpu``) run every configuration — ZeRO stages
0-3, ZeRO-Offload of stages 2 and 3 with the client optimizer, scope ``leading``/``all``,
response ``sin``/``circuit``/``gaussian`` — for 10 steps on halves of the same global
batches; the parameters must equal those of one plain process to fp32 tolerance.
Controls show the comparison can fail, and bf16 runs check the other wrappers' bindings.

One pair of workers runs all of them: the file takes 40-100 s on 2 busy cores, plus
50-90 s the first time on a machine, when DeepSpeed JIT-builds its shm comm op (cached
in TORCH_EXTENSIONS_DIR).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qstudy.optim import SuperpositionalAdamW

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER_PATH = HERE / "_zero_worker.py"
TIMEOUT_S = 600
# fp32 tolerance: parameters are O(0.1-1); the two sides differ only in how the
# gradient mean is summed (two halves averaged vs. one batch), measured at <= 6e-8.
ATOL = 1e-6


def _load_worker_module():
    spec = importlib.util.spec_from_file_location("_zero_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker_module()
CONFIGS = worker.configs()
COMPARED = [name for name, cfg in CONFIGS.items() if cfg["bind"] and not cfg["bf16"]]
BOUND = [name for name, cfg in CONFIGS.items() if cfg["bind"] and (cfg["zero"]["stage"] > 0 or cfg["bf16"])]
EXPECTED_WRAPPER = {
    0: "SuperpositionalAdamW",
    1: "DeepSpeedZeroOptimizer",
    2: "DeepSpeedZeroOptimizer",
    3: "DeepSpeedZeroOptimizer_Stage3",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def zero_results(tmp_path_factory) -> dict:
    """Runs the 2 workers once; returns rank 0's ``{config name: result}``."""
    out_dir = tmp_path_factory.mktemp("zero")
    out_path = out_dir / "results.pt"
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(worker.WORLD_SIZE),
        LOCAL_SIZE=str(worker.WORLD_SIZE),
        OMP_NUM_THREADS="1",
        # The venv's ninja first: a different ninja forces a rebuild of cached ops (docs/stack-notes.md#jit-built-ops-and-ninja).
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    procs, logs = [], []
    for rank in range(worker.WORLD_SIZE):
        log = open(out_dir / f"rank{rank}.log", "w+")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER_PATH), str(out_path)],
                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                cwd=out_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    # Wait for both; if one fails, its peer would wait in a collective: stop it then.
    deadline = time.monotonic() + TIMEOUT_S
    try:
        codes = [p.poll() for p in procs]
        while None in codes and not any(codes) and time.monotonic() < deadline:
            time.sleep(0.2)
            codes = [p.poll() for p in procs]
    finally:
        for p in procs:  # only the workers started above
            if p.poll() is None:
                p.kill()
                p.wait()
    tails = []
    for rank, log in enumerate(logs):
        log.seek(0)
        tails.append(f"--- rank {rank} ---\n" + log.read()[-4000:])
        log.close()
    if any(code != 0 for code in codes) or not out_path.exists():
        pytest.fail(
            f"ZeRO workers failed (exit codes {codes}; None: still running after {TIMEOUT_S} s "
            "or stopped when its peer failed):\n" + "\n".join(tails)
        )
    return torch.load(out_path)


@functools.cache
def reference(scope: str, response: str, quantum_weight: float = worker.QUANTUM_WEIGHT) -> dict:
    """One process, no DeepSpeed: the same model, optimizer and global batches."""
    model = worker.build_model()
    optimizer = SuperpositionalAdamW(
        worker.param_groups(model), **worker.optimizer_kwargs(scope, response, quantum_weight)
    )
    for x, y in worker.batches():
        optimizer.zero_grad()
        worker.loss_fn(model(x), y).backward()
        optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _result(zero_results: dict, name: str) -> dict:
    result = zero_results[name]
    if "error" in result:
        pytest.fail(f"{name} raised in the ZeRO worker (rank 0):\n{result['error']}")
    return result


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


@pytest.mark.parametrize("name", COMPARED)
def test_zero_matches_one_process(zero_results, name):
    cfg = CONFIGS[name]
    result = _result(zero_results, name)
    assert result["wrapper"] == EXPECTED_WRAPPER[cfg["zero"]["stage"]]
    expected = reference(cfg["scope"], cfg["response"])
    diff = _max_diff(result["params"], expected)
    assert diff <= ATOL, f"{name}: max |θ_zero - θ_1proc| = {diff:.3g} > {ATOL}"


@pytest.mark.parametrize("name", BOUND)
def test_bound_partitions_hold_their_coordinates(zero_results, name):
    """Every partition's claimed coordinates hold the model's initial values there, and
    the ranks together (each rank, where stage 0 does not partition) hold each coordinate
    of each group exactly once."""
    result = _result(zero_results, name)
    assert result["mismatches"] == 0
    holders = [None] if CONFIGS[name]["zero"]["stage"] > 0 else range(worker.WORLD_SIZE)
    for group, param_group in enumerate(worker.param_groups(worker.build_model())):
        numel = sum(p.numel() for p in param_group["params"])
        for holder in holders:
            coords = sorted(c for g, c, rank in result["owners"] if g == group and holder in (None, rank))
            assert coords == list(range(numel)), (
                f"{name}: group {group} holds {len(coords)} coordinates, expected {numel}"
            )


@pytest.mark.parametrize("stage", [s for s in worker.STAGES if s != "zero0"])
def test_some_circuit_block_straddles_ranks(zero_results, stage):
    """The set-up check: circuit blocks do cross the ranks' partitions, so the
    circuit runs above exercise the edge exchange."""
    n = worker.N_QUBITS
    ranks_of_block: dict[tuple[int, int], set[int]] = {}
    for group, coord, rank in _result(zero_results, f"{stage}/all/circuit")["owners"]:
        ranks_of_block.setdefault((group, coord // n), set()).add(rank)
    assert any(len(ranks) > 1 for ranks in ranks_of_block.values())


def test_zero3_leading_block_straddles_ranks(zero_results):
    """Under ZeRO-3 the leading coordinates (gain[0], gain[1], fc1.weight[0, 0]) live on both ranks."""
    owners = _result(zero_results, "zero3/leading/circuit")["owners"]
    ranks = {rank for group, coord, rank in owners if group == 0 and coord < worker.N_QUBITS}
    assert ranks == {0, 1}


def test_leading_perturbation_is_visible():
    """λ·Q on the leading coordinates moves them far beyond the tolerance, so a wrong
    coordinate mapping could not pass for a right one."""
    perturbed = reference("leading", "sin")
    plain = reference("leading", "sin", quantum_weight=0.0)

    def leading(params):  # the first N_QUBITS coordinates of group 0: gain[0], gain[1], fc1.weight[0, 0]
        return torch.cat([params["gain"], params["fc1.weight"].view(-1)])[: worker.N_QUBITS]

    assert (leading(perturbed) - leading(plain)).abs().min().item() > 10 * ATOL


def test_without_bind_deepspeed_zero_does_not_match(zero_results):
    """The control: without bind_deepspeed each rank perturbs the first coordinates of
    each of its flat partitions instead of the model's, and the comparison catches it."""
    diff = _max_diff(_result(zero_results, "zero2/leading/sin/unbound")["params"], reference("leading", "sin"))
    assert diff > 100 * ATOL


@pytest.mark.parametrize("name", [n for n, cfg in CONFIGS.items() if cfg["bf16"]])
def test_bf16_runs_bind_and_train(zero_results, name):
    """bf16: the layouts are checked above; here the run has the expected wrapper and
    trains to finite parameters that moved from their initial values."""
    result = _result(zero_results, name)
    expected = {0: "FP16_UnfusedOptimizer", 1: "BF16_Optimizer", 2: "DeepSpeedZeroOptimizer"}
    assert result["wrapper"] == expected[CONFIGS[name]["zero"]["stage"]]
    initial = {n: p.detach().bfloat16().float() for n, p in worker.build_model().named_parameters()}
    assert all(torch.isfinite(p).all() for p in result["params"].values())
    assert _max_diff(result["params"], initial) > 1e-3

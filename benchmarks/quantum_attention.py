"""Training-step cost of the quantum attention (docs/design.md §3) relative to stock SDPA Llama.

    .venv/bin/python benchmarks/quantum_attention.py              # default: 1 thread, 15 rounds
    .venv/bin/python benchmarks/quantum_attention.py --threads 2 --rounds 25

A tiny Llama (hidden 256, 4 layers, 4 heads, seq 256, batch 4) does forward + backward +
AdamW step. Every variant runs once per round, interleaved in the same process, so load
on the machine hits them alike; we print median step times, the spread (25th-75th
percentile) and the ratio of medians to SDPA. Then the circuit cost alone (series per
layer) at seq 128 vs 1024, which must not grow with the sequence.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def _tiny_llama(seq_len: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max(seq_len, 1024),
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation("sdpa")
    return model


def _variants(seq_len: int, names: list[str]):
    from qstudy.models import install_quantum_attention

    base = _tiny_llama(seq_len)
    made = {}
    for name in names:
        model = copy.deepcopy(base)
        if name != "sdpa":
            simulator = "aer" if name.startswith("aer") else "torch"
            install_quantum_attention(
                model, n_qubits=4, circuit_depth=2, simulator=simulator, compile=name.endswith("compiled")
            )
            with torch.no_grad():  # a non-zero gate, as after some training (Φ is then really in the graph)
                for module in model.modules():
                    if hasattr(module, "quantum_gate"):
                        module.quantum_gate.fill_(0.1)
        model.train()
        made[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    return made


def _step(model, optimizer, ids) -> float:
    start = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def bench_steps(names: list[str], rounds: int, warmup: int, seq_len: int, batch: int) -> dict[str, list[float]]:
    made = _variants(seq_len, names)
    ids = torch.randint(0, 2048, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        for name in names:  # interleaved: one step of every variant per round
            elapsed = _step(*made[name], ids)
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def bench_circuit(simulator: str, seq_lens: list[int], repeats: int = 20) -> dict[int, float]:
    """Median times of one layer's circuit (series forward) and of the whole Φ work, per sequence length."""
    from qstudy.quantum import response_series
    from qstudy.quantum._fourier import evaluate_series

    out = {}
    for seq_len in seq_lens:
        a = torch.rand(2, 4, requires_grad=True)
        b = torch.rand(2, 4, requires_grad=True)
        scores = torch.randn(4, 4, seq_len, seq_len)
        series_times, total_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            series, omega = response_series(a, b, simulator)
            middle = time.perf_counter()
            evaluate_series(scores, series, omega).sum().backward()
            end = time.perf_counter()
            series_times.append(middle - start)
            total_times.append(end - start)
        out[seq_len] = (statistics.median(series_times), statistics.median(total_times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--variants",
        default="sdpa,torch-eager,torch-compiled,aer-compiled",
        help="comma list of sdpa, torch-eager, torch-compiled, aer-eager, aer-compiled",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    print(
        f"torch {torch.__version__}, torch threads = {torch.get_num_threads()}, "
        f"seq {args.seq_len}, batch {args.batch}, rounds {args.rounds} (+{args.warmup} warm-up), interleaved"
    )

    times = bench_steps(names, args.rounds, args.warmup, args.seq_len, args.batch)
    _, sdpa_median, _ = _quartiles(times["sdpa"]) if "sdpa" in times else (0, float("nan"), 0)
    print(f"{'variant':<16}{'median ms':>10}{'p25-p75 ms':>16}{'ratio vs sdpa':>15}{'ratio p25-p75':>16}")
    for name in names:
        q1, med, q3 = _quartiles(times[name])
        ratios = sorted(t / s for t, s in zip(times[name], times["sdpa"]))  # same round, paired
        r1, _, r3 = _quartiles(ratios)
        print(
            f"{name:<16}{med * 1e3:>10.1f}{f'{q1 * 1e3:.1f}-{q3 * 1e3:.1f}':>16}{med / sdpa_median:>15.3f}"
            f"{f'{r1:.3f}-{r3:.3f}':>16}"
        )

    print(
        "\none layer's circuit (forward: simulate nd+1 points, solve the series) vs the whole Φ work"
        " (series + Φ on every score, eager, + backward):"
    )
    for simulator in ("torch", "aer"):
        for seq_len, (series_s, total_s) in bench_circuit(simulator, [128, 1024]).items():
            print(
                f"  {simulator:<6} seq {seq_len:>5}: circuit {series_s * 1e3:7.2f} ms, "
                f"series + Φ on {4 * 4 * seq_len**2:>9,} scores {total_s * 1e3:8.1f} ms"
            )


if __name__ == "__main__":
    main()

"""What an arm costs per step, measured so that it means something: paired, in one process.

A study's own ``step_time_s`` cannot answer "+35% per epoch": trials that share a
machine's cores slow each other by whatever runs beside them (12-40 s for the same work,
two trials on two cores). Here every arm's model and optimizer are built in one process
(one torch thread), warmed up, then timed in rounds: each round runs ``steps`` training
steps of every arm back to back, in an order rotated per round, so drift of the machine
lands on all arms alike. An arm's cost is its per-round mean step time; its ratio to the
control is taken round by round (a paired ratio), with a Student-t interval over rounds.

What is timed: forward, backward, gradient clipping (as the trial's config) and the
optimizer step of the trial's model on its own batches — the method's compute. DeepSpeed's
wrapper and Ray are not in it (the same for every arm).
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["TIMING_METHOD", "measure_step_times"]

TIMING_METHOD = (
    "per-step wall time in one process, one torch thread, arms interleaved in rotated order per round "
    "(forward + backward + clipping + optimizer step on the trial's own batches; no DeepSpeed, no Ray)"
)
# Beyond this share of the machine's memory for the parameters, gradients and Adam state
# of all arms together, the report does not build the arms in its own process (a
# GPU-sized model): cost is then for benchmarks/.
_MAX_MEMORY_SHARE = 0.5


def measure_step_times(
    study, arms: dict[str, dict[str, Any]], rounds: int, steps: int, warmup: int = 2, printer=print
) -> tuple[dict[str, list[float]], str | None]:
    """Mean step seconds of each arm per round.

    Args:
        study: the ``StudyConfig``.
        arms: arm -> its overrides of ``study.trial`` (the seed is set to the study's first).
        rounds, steps, warmup: timing rounds, steps per arm per round, untimed steps first.

    Returns:
        ``({arm: [seconds per step, one per round]}, None)``, or ``({}, why not)`` when the
        arms are too large to build side by side here.
    """
    import torch

    from qstudy.models import build_model
    from qstudy.optim import SuperpositionalAdamW
    from qstudy.train import build_trial_data

    seed = study.seeds[0] if study.seeds else study.trial.seed
    limit = _MAX_MEMORY_SHARE * _memory_bytes()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        setups, total_bytes = {}, 0
        for name, overrides in arms.items():
            trial = study.trial_config({**overrides, "seed": seed})
            if trial.resources.use_gpu or (trial.model.path is None and trial.model.preset != "llama-tiny"):
                return {}, (
                    f"arm {name}: a {'GPU' if trial.resources.use_gpu else trial.model.preset} trial is not "
                    "timed in the report's process; measure its cost with benchmarks/ on the hardware it runs on"
                )
            # A local checkpoint is sized before it is loaded: weights, grads, Adam's two moments.
            if trial.model.path is not None and total_bytes + 4 * _checkpoint_bytes(trial.model.path) > limit:
                return {}, f"the arms' models need over {limit / 2**30:.0f} GiB side by side: not timed here"
            data = build_trial_data(trial)
            torch.manual_seed(trial.seed)
            model = build_model(trial, data)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            total_bytes += 16 * sum(p.numel() for p in params)  # weights, grads, Adam's two moments
            if total_bytes > limit:
                return {}, f"the arms' models need over {limit / 2**30:.0f} GiB side by side: not timed here"
            optimizer = SuperpositionalAdamW(params, **trial.optimizer.optimizer_kwargs())
            setups[name] = _Stepper(trial, data, model, params, optimizer)
        for stepper in setups.values():
            for _ in range(warmup):
                stepper.step()
        names = list(setups)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                for _ in range(steps):
                    setups[name].step()
                times[name].append((time.perf_counter() - t0) / steps)
            printer(f"  timing round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.1f} ms" for n in names))
        return times, None
    finally:
        torch.set_num_threads(threads)


class _Stepper:
    """One arm's training step, as the trial's loop takes it (without DeepSpeed)."""

    def __init__(self, trial, data, model, params, optimizer):
        self.trial, self.data, self.model, self.params, self.optimizer = trial, data, model, params, optimizer
        self.count = 0

    def step(self) -> None:
        import torch

        self.count += 1
        for micro in self.data.micro_batches(self.count, 0, 1):
            loss = self.model(**micro).loss / self.data.accumulation
            loss.backward()
        if self.trial.train.gradient_clipping > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.trial.train.gradient_clipping)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _checkpoint_bytes(path: str) -> int:
    """The float32 bytes of a local checkpoint's weights (its safetensors or PyTorch files)."""
    import json
    from pathlib import Path

    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix in (".safetensors", ".bin"))
    config = json.loads(Path(path, "config.json").read_text())
    return size * (2 if (config.get("dtype") or config.get("torch_dtype")) in ("bfloat16", "float16") else 1)


def _memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

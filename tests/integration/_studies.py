"""Study files and `qstudy sweep` processes for the integration tests (not a test module)."""

import os
import subprocess
import sys

import yaml


def write_study(tmp_path, name, **over):
    trial = {
        "seed": 0,
        "model": {"preset": "llama-tiny"},
        "quantum": {"n_qubits": 2, "circuit_depth": 1},
        "optimizer": {"lr": 3e-3},
        "data": {
            "task": "synthetic_gsm8k",
            "train_examples": 128,
            "eval_examples": 16,
            "generate_examples": 0,
            "max_tokens": 160,
        },
        "train": {
            "max_steps": 6,
            "global_batch_size": 4,
            "micro_batch_size": 4,
            "eval_every_steps": 3,
            "log_every_steps": 1,
        },
        "deepspeed": {"preset": "zero2"},
        "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 0},
    }
    study = {
        "name": name,
        "objective": {"metric": "eval_loss", "mode": "min"},
        "sampler": {"type": "tpe", "seed": 0},
        "scheduler": {"type": "none"},
        "num_samples": 3,
        "max_concurrent": 2,
        "trial_timeout_s": 600,
        "space": {"optimizer.quantum_weight": {"type": "float", "low": 0.1, "high": 1.0}},
        "baselines": [{"optimizer.quantum_weight": 0.0}],
        "trial": trial,
        "tracking": {"uri": "sqlite:///mlruns.db"},
        "storage_path": "runs",
    }
    for dotted, value in over.items():
        node = study
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"# qstudy sweep {name}.yaml\n" + yaml.safe_dump(study))
    return path


def write_comparison(tmp_path, name, arms, seeds, **over):
    """A comparison study: the study of ``write_study`` with ``arms`` and ``seeds`` in place
    of its space, baselines and sampler (``num_samples`` derived)."""
    path = write_study(tmp_path, name, **over)
    study = yaml.safe_load(path.read_text())
    for key in ("space", "baselines", "sampler", "num_samples"):
        study.pop(key)
    study.update(arms=arms, seeds=seeds)
    path.write_text(f"# qstudy sweep {name}.yaml\n" + yaml.safe_dump(study))
    return path


def sweep(path, cwd, address=None, env=None, **kwargs):
    """`qstudy sweep path` (``--address`` when given) as a subprocess in ``cwd``."""
    env = {**(env or os.environ), "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    extra = ["--address", address] if address else []
    return subprocess.Popen(
        [sys.executable, "-m", "qstudy.cli", "sweep", str(path), *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def study_runs(tmp_path, study):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("qstudy.role") == "study"]
    children = [r for r in runs if "qstudy.trial_id" in r.data.tags]
    return client, parents, children

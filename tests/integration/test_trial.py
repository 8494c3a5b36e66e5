"""One trial end to end: real local Ray, Ray Train workers, DeepSpeed on CPU (gloo)."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from qstudy.config import ConfigError, TrialConfig, apply_overrides

pytestmark = pytest.mark.integration


def _trial(**overrides) -> TrialConfig:
    base = {
        "seed": 0,
        "model": {"preset": "llama-tiny"},
        "quantum": {"enabled": True, "n_qubits": 4, "circuit_depth": 2},
        "optimizer": {"lr": 3e-3, "quantum_weight": 0.5},
        "data": {
            "task": "synthetic_gsm8k",
            "train_examples": 256,
            "eval_examples": 32,
            "generate_examples": 2,
            "max_new_tokens": 8,
            "max_tokens": 160,
        },
        "train": {
            "max_steps": 12,
            "global_batch_size": 8,
            "micro_batch_size": 4,
            "eval_every_steps": 6,
            "log_every_steps": 3,
        },
        "deepspeed": {"preset": "zero2"},
        "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 1},
    }
    return apply_overrides(TrialConfig.model_validate(base), overrides)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import ray

    from qstudy.train import init_ray, worker_env

    # The workers' tokenized-data cache starts empty here, and stays out of ~/.cache.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QSTUDY_DATA_CACHE", str(tmp_path_factory.mktemp("data-cache")))
        init_ray(env=worker_env(_trial()), num_cpus=2)
        yield ray
        ray.shutdown()


@pytest.mark.parametrize(
    "workers,preset,accumulation",
    [(1, "zero2", 2), (2, "zero2", 1), (2, "zero3", 1)],
)
def test_trial_lowers_eval_loss(local_ray, tmp_path, workers, preset, accumulation):
    from qstudy.train import run_trial

    trial = _trial(
        **{
            "resources.num_workers": workers,
            "deepspeed.preset": preset,
            "train.micro_batch_size": 8 // (workers * accumulation),
        }
    )
    assert trial.gradient_accumulation_steps == accumulation
    outcome = run_trial(trial, name=f"t-{workers}-{preset}", storage_path=tmp_path)
    metrics = outcome["metrics"]
    assert outcome["status"] == "completed", metrics.get("error")
    assert metrics["step"] == 12
    assert metrics["eval_loss"] < metrics["initial_eval_loss"] - 0.05
    assert 0.0 <= metrics["gsm8k_accuracy"] <= 1.0
    assert metrics["aer_parity"] < 1e-6
    assert metrics["tokens_per_s"] > 0
    assert 0 < metrics["quantum_attention_forward_time_share"] < 1
    assert 0 <= metrics["perturbation_time_share"] < metrics["optimizer_time_share"] <= 1
    assert metrics["perturbed_coordinates"] == 4  # scope leading, n_qubits 4, over any worker count
    assert 0 <= metrics["nonzero_perturbation_coordinates"] <= 4
    assert 0 < metrics["mean_train_loss"] < metrics["initial_eval_loss"] + 1
    assert outcome["checkpoint"] is not None


def _registered_checkpoint(run_dir: Path) -> bool:
    """Whether Ray Train has registered a checkpoint of the run: what a restart resumes
    from. A ``checkpoint_*`` folder appears earlier, while the ranks still upload into it;
    a worker killed then restarts from step 0."""
    import json

    snapshot = (
        run_dir / "checkpoint_manager_snapshot.json"
    )  # ray.train.v2 constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    try:
        return json.loads(snapshot.read_text()).get("latest_checkpoint_result") is not None
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return False


class _ReportLog:
    """A Ray Train callback that appends rank 0's reports to a JSON-lines file.

    It runs in the Train controller's process, so the test reads what it wrote."""

    def __init__(self, path: Path):
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint):
        import json

        with open(self.path, "a") as f:
            f.write(json.dumps({k: metrics[0].get(k) for k in ("step", "train_loss", "eval_loss")}) + "\n")


def _fit_logged(trial, name: str, storage_path: Path, log: Path):
    import ray.cloudpickle
    from ray.train import UserCallback

    from qstudy.train import build_trainer

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the controller cannot import this test module
    callback = type("ReportLog", (_ReportLog, UserCallback), {})(log)
    return build_trainer(trial, name, storage_path, callbacks=[callback]).fit()


def _per_step(log: Path, key: str) -> dict[int, float]:
    """``{step: value}``; a step reported twice (again after a restart) keeps its last value."""
    import json

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return {row["step"]: row[key] for row in rows if row.get(key) is not None}


@pytest.mark.parametrize("preset", ["zero2", "zero3"])
def test_killed_worker_resumes_exactly_where_it_stopped(local_ray, tmp_path, preset):
    """A worker SIGKILLed mid-run: the trial resumes from its last checkpoint and gives
    the per-step train loss and final eval of the same trial run uninterrupted — Adam's
    moments, the step count, the LR warm-up, the data order and the gaussian noise all
    continue as they were (fp32, CPU)."""
    from ray.util.state import list_actors

    trial = _trial(
        **{
            "train.max_steps": 40,
            "train.eval_every_steps": 20,
            "train.checkpoint_every_steps": 5,
            "train.log_every_steps": 1,
            "resources.num_workers": 2,
            "train.micro_batch_size": 4,
            "deepspeed.preset": preset,
            "optimizer.response": "gaussian",
            "optimizer.scope": "all",
            "optimizer.warmup_steps": 30,
            "data.generate_examples": 0,
        }
    )
    whole = _fit_logged(trial, "whole", tmp_path, tmp_path / "whole.jsonl")
    assert whole.error is None, whole.error

    result = {}
    runner = threading.Thread(
        target=lambda: result.update(r=_fit_logged(trial, "killed", tmp_path, tmp_path / "killed.jsonl"))
    )
    runner.start()
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and runner.is_alive():
        if _registered_checkpoint(Path(tmp_path, "killed")):
            workers = list_actors(
                address=local_ray.get_runtime_context().gcs_address,  # this test's Ray, whatever else runs here
                filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
            )
            if workers:
                killed = workers[-1]["pid"]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    runner.join(timeout=400)
    assert killed is not None, "no checkpoint appeared before the trial ended"
    resumed = result["r"]
    assert resumed.error is None, resumed.error
    assert 5 <= resumed.metrics["resumed_from_step"] < 40 and resumed.metrics["resumed_from_step"] % 5 == 0

    expected, got = (
        _per_step(tmp_path / "whole.jsonl", "train_loss"),
        _per_step(tmp_path / "killed.jsonl", "train_loss"),
    )
    assert sorted(got) == sorted(expected) == list(range(1, 41))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    assert resumed.metrics["eval_loss"] == pytest.approx(whole.metrics["eval_loss"], rel=1e-6)
    # the paper's GSM8K measure, carried over the restart
    assert resumed.metrics["mean_train_loss"] == pytest.approx(sum(expected.values()) / 40, rel=1e-6)
    # scope all: every coordinate perturbed, the perturbation measured next to AdamW's step
    assert resumed.metrics["perturbed_coordinates"] == resumed.metrics["model_parameters"]
    assert 0 < resumed.metrics["nonzero_perturbation_coordinates"] <= resumed.metrics["perturbed_coordinates"]
    assert 0 < resumed.metrics["perturbation_to_adam_ratio"] < 10


def test_eval_loss_is_the_same_for_any_worker_count_and_micro_batch(local_ray, tmp_path):
    """The initial model is the same (same seed), so its eval loss must not depend on how
    the held-out set is split: the mean over scored tokens."""
    from qstudy.train import run_trial

    base = {
        "train.max_steps": 1,
        "train.eval_every_steps": 1,
        "data.generate_examples": 0,
        "train.checkpoint_every_steps": 0,
    }
    one = run_trial(_trial(**base, **{"train.micro_batch_size": 8}), name="eval-1x8", storage_path=tmp_path)
    two = run_trial(
        _trial(**base, **{"resources.num_workers": 2, "train.micro_batch_size": 2}),
        name="eval-2x2",
        storage_path=tmp_path,
    )
    assert one["status"] == two["status"] == "completed", (one["metrics"].get("error"), two["metrics"].get("error"))
    assert two["metrics"]["initial_eval_loss"] == pytest.approx(one["metrics"]["initial_eval_loss"], rel=1e-6)


def test_local_checkpoint_trains_offline(local_ray, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from qstudy.data import byte_tokenizer
    from qstudy.models import llama_config_kwargs
    from qstudy.train import run_trial

    tok = byte_tokenizer()
    kwargs = llama_config_kwargs("llama-tiny")
    kwargs.update(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id
    )
    LlamaForCausalLM(LlamaConfig(**kwargs)).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    trial = _trial(**{"model.path": str(tmp_path / "ckpt"), "train.max_steps": 6, "train.eval_every_steps": 6})
    outcome = run_trial(trial, name="from-path", storage_path=tmp_path / "runs")
    assert outcome["status"] == "completed", outcome["metrics"].get("error")
    assert outcome["metrics"]["eval_loss"] < outcome["metrics"]["initial_eval_loss"]


def test_unplaceable_trial_is_refused_before_any_worker(local_ray, tmp_path):
    from qstudy.train import run_trial

    trial = _trial(**{"resources.num_workers": 8, "train.micro_batch_size": 1})
    with pytest.raises(ConfigError) as err:
        run_trial(trial, name="too-big", storage_path=tmp_path, source="trial.yaml")
    assert "trial.yaml: resources.num_workers: the Ray cluster can place at most 2 workers of 1 CPU each" in str(
        err.value
    )
    assert "got num_workers=8" in str(err.value)
    assert not (tmp_path / "too-big").exists()


def test_same_seed_same_losses_and_divergence_is_a_status(local_ray, tmp_path):
    from qstudy.train import run_trial

    trial = _trial(**{"train.max_steps": 4, "train.eval_every_steps": 4, "data.generate_examples": 0})
    first = run_trial(trial, name="seed-a", storage_path=tmp_path)["metrics"]
    second = run_trial(trial, name="seed-b", storage_path=tmp_path)["metrics"]
    # The second run reads the first's tokenized data back from the cache: the same losses.
    assert first["train_loss"] == second["train_loss"] and first["eval_loss"] == second["eval_loss"]
    assert any(Path(os.environ["QSTUDY_DATA_CACHE"]).glob("*.pt"))
    parts = ("startup_imports_s", "startup_data_s", "startup_model_s", "startup_deepspeed_init_s")
    assert all(second[key] >= 0 for key in parts)
    assert second["startup_build_s"] == pytest.approx(second["startup_data_s"] + second["startup_model_s"])

    # An absurd learning rate overflows fp32 within a few steps: the trial ends as diverged.
    diverging = _trial(
        **{"optimizer.lr": 1e30, "train.max_steps": 8, "train.eval_every_steps": 8, "data.generate_examples": 0}
    )
    outcome = run_trial(diverging, name="diverge", storage_path=tmp_path)
    assert outcome["status"] == "diverged"
    assert outcome["metrics"]["step"] < 8


def test_classification_trial_adam_reaches_90_percent(local_ray, tmp_path):
    """The paper's experiment 1 as a trial: AdamW (λ = 0) reaches 90% eval accuracy
    within a 10-epoch budget (1024 sequences, batch 32: 320 steps)."""
    from qstudy.train import run_trial

    trial = _trial(
        **{
            "data.task": "classification",
            "data.train_examples": 1024,
            "data.eval_examples": 512,
            "quantum.enabled": False,
            "optimizer.quantum_weight": 0.0,
            "optimizer.lr": 1e-3,
            "train.max_steps": 320,
            "train.global_batch_size": 32,
            "train.micro_batch_size": 32,
            "train.eval_every_steps": 320,
            "train.log_every_steps": 80,
        }
    )
    metrics = run_trial(trial, name="cls", storage_path=tmp_path)["metrics"]
    assert metrics["initial_eval_accuracy"] <= 0.4  # about chance (4 classes)
    assert metrics["eval_accuracy"] >= 0.9
    assert metrics["eval_loss"] < metrics["initial_eval_loss"]


def test_rerun_of_a_finished_trial_reports_its_final_result(local_ray, tmp_path):
    """A study re-running a trial whose driver died after training ended: Ray Train
    restores the final checkpoint, and the trial must still end with its result."""
    from qstudy.train import run_trial

    trial = _trial(**{"train.max_steps": 4, "train.eval_every_steps": 4, "data.generate_examples": 0})
    first = run_trial(trial, name="again", storage_path=tmp_path)
    second = run_trial(trial, name="again", storage_path=tmp_path)
    assert first["status"] == second["status"] == "completed", second["metrics"].get("error")
    assert second["metrics"]["step"] == 4 and second["metrics"]["resumed_from_step"] == 4
    assert second["metrics"]["eval_loss"] == first["metrics"]["eval_loss"]


def test_checkpoint_cadence_apart_from_eval_and_only_the_newest_kept(local_ray, tmp_path):
    import torch

    from qstudy.train import run_trial

    trial = _trial(
        **{
            "train.max_steps": 8,
            "train.eval_every_steps": 8,
            "train.checkpoint_every_steps": 3,  # steps 3, 6 and the last, 8
            "train.checkpoints_to_keep": 2,
            "data.generate_examples": 0,
        }
    )
    outcome = run_trial(trial, name="cadence", storage_path=tmp_path)
    assert outcome["status"] == "completed", outcome["metrics"].get("error")
    kept = sorted(Path(tmp_path, "cadence").glob("checkpoint_*/qstudy/mp_rank_00_model_states.pt"))
    steps = sorted(torch.load(path, map_location="cpu", weights_only=False)["step"] for path in kept)
    assert steps == [6, 8]  # step 3's was deleted


def test_trial_without_checkpoints_ends_with_its_status_and_a_rerun_hands_it_on(local_ray, tmp_path):
    from qstudy.train import run_trial

    trial = _trial(
        **{
            "train.max_steps": 4,
            "train.eval_every_steps": 2,
            "train.checkpoint_every_steps": 0,
            "data.generate_examples": 0,
        }
    )
    first = run_trial(trial, name="nockpt", storage_path=tmp_path)
    assert first["status"] == "completed", first["metrics"].get("error")
    assert sorted(p.name for p in Path(first["checkpoint"]).iterdir()) == ["final_status.json"]  # no DeepSpeed state
    second = run_trial(trial, name="nockpt", storage_path=tmp_path)
    assert second["status"] == "completed", second["metrics"].get("error")
    assert (
        second["metrics"]["resumed_from_step"] == 4 and second["metrics"]["eval_loss"] == first["metrics"]["eval_loss"]
    )

"""The per-worker loop of a trial: model, data, SuperpositionalAdamW under DeepSpeed,
metrics and checkpoints through ``ray.train.report``.

Runs inside Ray Train workers; everything heavy is imported here, not by the driver.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from typing import Any

import torch

__all__ = ["train_loop_per_worker", "CHECKPOINT_TAG", "eval_sums", "learning_rate"]

CHECKPOINT_TAG = "qstudy"
FINAL_STATUS = "final_status.json"  # the only file of a status-only final checkpoint


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. ``config``: ``{"trial": TrialConfig as a dict}``."""
    import ray.train

    from qstudy.config import TrialConfig

    trial = TrialConfig.model_validate(config["trial"])
    ctx = ray.train.get_context()
    loop = _Loop(trial, rank=ctx.get_world_rank(), world_size=ctx.get_world_size())
    loop.run(submitted_at=config.get("submitted_at"))


class _Loop:
    def __init__(self, trial, rank: int, world_size: int):
        self.trial = trial
        self.rank = rank
        self.world_size = world_size

    def run(self, submitted_at: float | None = None) -> None:
        entered = time.time()
        import deepspeed  # inside the worker: importing it in the driver has broken before (https://github.com/ray-project/ray/issues/50406)
        import ray.train
        import torch.distributed as dist

        from qstudy.models import build_model, quantum_attention_forward_time_s
        from qstudy.optim import SuperpositionalAdamW, bind_deepspeed
        from qstudy.train._deepspeed_config import deepspeed_config
        from qstudy.train._task import build_task

        trial = self.trial
        checkpoint = ray.train.get_checkpoint()
        ended = _ended_metrics(checkpoint)
        if ended is not None:
            # Restored from a status-only final checkpoint (the trial diverged, or completed
            # with train.checkpoint_every_steps 0) by a study re-running it: nothing to resume,
            # hand the result on again.
            self._report_status({**ended, "resumed_from_step": ended.get("step", 0)})
            return
        imported = time.time()
        use_gpu = trial.resources.use_gpu and torch.cuda.is_available()
        device = torch.device("cuda", torch.cuda.current_device()) if use_gpu else torch.device("cpu")
        task = build_task(trial)
        ds_config = deepspeed_config(trial, use_gpu)
        torch.manual_seed(trial.seed)  # the same initial model on every rank
        model = build_model(trial, task, deepspeed_config=ds_config)  # ZeRO-3: partitioned as it is built
        built = time.time()
        optimizer = SuperpositionalAdamW(
            [p for p in model.parameters() if p.requires_grad],
            **trial.optimizer.optimizer_kwargs(),
        )
        engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=ds_config, dist_init_required=False
        )
        client = bind_deepspeed(engine)
        initialized = time.time()
        self.engine, self.task, self.device, self.dist = engine, task, device, dist

        start_step, initial, finished = 0, {}, {}
        self.train_loss_sum = 0.0  # Σ train_loss over the steps so far: mean_train_loss, the paper's GSM8K measure
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                _, client_state = engine.load_checkpoint(directory, tag=CHECKPOINT_TAG)
                _restore_rng_state(directory, self.rank)
            start_step, initial = int(client_state["step"]), dict(client_state.get("initial", {}))
            finished = dict(client_state.get("metrics", {}))
            self.train_loss_sum = float(client_state.get("train_loss_sum", 0.0))
        else:
            initial = {f"initial_{k}": v for k, v in self._evaluate(generate=False).items()}
        # Repeated in every report, so the trial's last result carries them.
        self.constant = {"resumed_from_step": start_step, **initial, **_quantum_parity(model, trial)}
        # Exact size (ZeRO-3 leaves p.numel() == 0; a tied embedding is yielded once) and
        # where the ranks ran (the study driver tags the MLflow run with it).
        self.constant["model_parameters"] = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())
        self.constant["worker_nodes"] = self._worker_nodes()
        # Where start-up time goes (benchmarks/trial_startup.py): trial submitted -> worker
        # entry -> imports -> data + model -> deepspeed.initialize -> first optimizer step.
        self.constant.update(
            startup_imports_s=imported - entered,
            startup_build_s=built - imported,
            startup_deepspeed_init_s=initialized - built,
        )
        if submitted_at is not None:
            self.constant["startup_worker_entry_s"] = entered - submitted_at
        self.initial = initial
        if start_step >= trial.train.max_steps:
            # Restored from the final checkpoint (a study re-running a trial whose driver
            # died after training ended): hand the final metrics on again, or the trial
            # would end without a result.
            self._report({**finished, "resumed_from_step": start_step}, final=True)
            return
        pending: dict[str, Any] = {}
        first_step = True
        loop_started = time.perf_counter()
        for step in range(start_step + 1, trial.train.max_steps + 1):
            self._set_lr(step)
            last = step == trial.train.max_steps
            evaluate = step % trial.train.eval_every_steps == 0 or last
            save = self._checkpoint_due(step, last)
            reported = evaluate or save or step % trial.train.log_every_steps == 0
            client.measure_perturbation = reported  # the steps whose metrics are reported
            t0 = time.perf_counter()
            loss_sum, tokens = 0.0, 0
            finite = True
            optimizer_s = 0.0
            perturbation_before = client.perturbation_time_s
            attention_before = quantum_attention_forward_time_s()
            for micro in task.micro_batches(step, self.rank, self.world_size):
                micro = {k: v.to(device) for k, v in micro.items()}
                loss = engine(**micro).loss
                finite = self._all_finite(loss)
                if not finite:
                    break
                engine.backward(loss)
                t_opt = time.perf_counter()
                skipped = engine.skipped_steps
                engine.step()  # DeepSpeed steps the optimizer at the accumulation boundary
                optimizer_s += time.perf_counter() - t_opt
                if engine.skipped_steps > skipped:
                    # DeepSpeed skips a step whose gradients hold inf/NaN (agreed over ranks).
                    # With no fp16 loss scale to lower, that is divergence, not a scale probe:
                    # left alone the trial would run on with frozen parameters.
                    finite = False
                    break
                loss_sum += float(loss.detach())
                tokens += int(micro["attention_mask"].sum())
            if not finite:
                pending.update({"step": step, "train_loss": float("nan"), "status": "diverged"})
                self._report(pending, final=True)
                return
            step_s = time.perf_counter() - t0
            if first_step and submitted_at is not None:
                self.constant["startup_to_first_step_s"] = time.time() - submitted_at
            first_step = False
            global_loss, global_tokens = self._all_reduce_sum([loss_sum / max(1, task.accumulation), float(tokens)])
            metrics = {
                "step": step,
                "train_loss": global_loss / self.world_size,
                "lr": engine.optimizer.param_groups[0]["lr"]
                if engine.optimizer is not None
                else client.param_groups[0]["lr"],
                "step_time_s": step_s,
                "tokens_per_s": global_tokens / step_s if step_s > 0 else float("nan"),
                "optimizer_time_share": optimizer_s / step_s if step_s > 0 else float("nan"),
                "perturbation_time_share": (client.perturbation_time_s - perturbation_before) / step_s
                if step_s > 0
                else float("nan"),
                # forward only (circuit series + scores); the backward is not timed
                "quantum_attention_forward_time_share": (quantum_attention_forward_time_s() - attention_before) / step_s
                if step_s > 0
                else float("nan"),
            }
            self.train_loss_sum += metrics["train_loss"]
            metrics["mean_train_loss"] = self.train_loss_sum / step
            pending.update(metrics)
            pending["train_time_s"] = time.perf_counter() - loop_started  # steps + evals of this run
            if evaluate:
                pending.update(self._evaluate())
                pending["train_time_s"] = time.perf_counter() - loop_started
            if reported:
                pending.update(self._perturbation_metrics(client))
                pending["status"] = "completed" if last else "running"
                if save:
                    self._report(pending, step=step)
                else:  # the last step without a DeepSpeed checkpoint still ends with a status one
                    self._report(pending, final=last)
                pending = {}

    # ---------------------------------------------------------------- helpers
    def _report_status(self, metrics: dict[str, Any]) -> None:
        """Reports the final metrics with a small checkpoint holding only them (``FINAL_STATUS``)."""
        import json

        import ray.train
        from ray.train import Checkpoint

        with tempfile.TemporaryDirectory(prefix="qstudy-final-") as directory:
            if self.rank == 0:
                with open(os.path.join(directory, FINAL_STATUS), "w") as f:
                    json.dump(metrics, f)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))

    def _perturbation_metrics(self, client) -> dict[str, float]:
        """How big the perturbation was next to the AdamW update, on the step just taken.

        ``perturbation_to_adam_ratio`` = ‖lr·λ·Q‖ / ‖AdamW step‖ over the perturbed
        coordinates; ``perturbed_coordinates`` of them, ``nonzero_perturbation_coordinates``
        with Q ≠ 0 (with ``scope: leading`` and an embedding row whose token never occurs,
        0: λ can change nothing). Nothing is logged for λ = 0 or ``response: none``.
        """
        from qstudy.train._deepspeed_config import zero_stage

        stats = client.perturbation_stats()
        if self.world_size > 1 and zero_stage(self.trial.deepspeed.preset) > 0:  # each rank holds its partition's sums
            stats = dict(zip(stats, self._all_reduce_sum(list(stats.values()))))
        if not stats["perturbed"]:
            return {}
        return {
            "perturbation_to_adam_ratio": math.sqrt(stats["perturbation_sq"] / stats["adam_sq"])
            if stats["adam_sq"]
            else float("nan"),
            "perturbed_coordinates": stats["perturbed"],
            "nonzero_perturbation_coordinates": stats["nonzero"],
        }

    def _checkpoint_due(self, step: int, last: bool) -> bool:
        every = self.trial.train.checkpoint_every_steps
        if every is None:
            every = self.trial.train.eval_every_steps
        return every > 0 and (step % every == 0 or last)

    def _set_lr(self, step: int) -> None:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = learning_rate(self.trial, step)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self._comm_device())
        if self.world_size > 1:
            self.dist.all_reduce(flag)
        return flag.item() == 0.0

    def _all_reduce_sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        if self.world_size > 1:
            self.dist.all_reduce(t)
        return t.tolist()

    def _comm_device(self):
        return self.device

    def _worker_nodes(self) -> str:
        """The Ray node ids of all ranks: sorted, de-duplicated, comma-joined."""
        import ray

        nodes = [ray.get_runtime_context().get_node_id()]
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            self.dist.all_gather_object(gathered, nodes[0])
            nodes = gathered
        return ",".join(sorted(set(nodes)))

    @torch.no_grad()
    def _evaluate(self, generate: bool = True) -> dict[str, float]:
        engine, task = self.engine, self.task
        engine.eval()
        sums = eval_sums(engine, task, self.rank, self.world_size, self.device)
        loss_sum, scored, correct, total = self._all_reduce_sum(sums)
        metrics = {"eval_loss": loss_sum / max(1.0, scored)}
        if task.kind == "classification":
            metrics["eval_accuracy"] = correct / max(1.0, total)
        elif task.generate_count and generate:
            hits, asked = task.generate_accuracy(engine.module, self.rank, self.world_size, self.device, self._synced())
            hits, asked = self._all_reduce_sum([hits, asked])
            metrics["gsm8k_accuracy"] = hits / max(1.0, asked)
        engine.train()
        return metrics

    def _synced(self) -> bool:
        from qstudy.train._deepspeed_config import zero_stage

        return self.world_size > 1 and zero_stage(self.trial.deepspeed.preset) == 3

    def _report(self, metrics: dict[str, Any], step: int | None = None, final: bool = False) -> None:
        """Reports metrics; with ``step``, a DeepSpeed checkpoint of every rank's shard.

        A run's ``Result.metrics`` are those of its last checkpoint, so a trial that ends
        without a DeepSpeed one (diverged, or ``checkpoint_every_steps`` 0) reports a small
        status checkpoint instead (``final``).
        """
        import ray.train

        metrics = {**self.constant, **metrics}
        if self.device.type == "cuda":  # next to `qstudy plan`'s per-GPU estimate
            metrics["gpu_max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if final:
            self._report_status(metrics)
            return
        if step is None:
            ray.train.report(metrics)
            return
        client_state = {
            "step": step,
            "initial": self.initial,
            "metrics": metrics,
            "train_loss_sum": self.train_loss_sum,
        }
        with _checkpoint_directory(step) as (directory, report):
            self.engine.save_checkpoint(directory, tag=CHECKPOINT_TAG, client_state=client_state)
            torch.save(_rng_state(), os.path.join(directory, _RNG_STATE.format(rank=self.rank)))
            report(metrics)


_RNG_STATE = "rng_state_rank{rank}.pt"  # per rank: dropout and sampling continue as if never stopped


def learning_rate(trial, step: int) -> float:
    """The lr of optimizer step ``step`` (1-based): linear warm-up over
    ``optimizer.warmup_steps`` (lr·step/warmup), then constant, or (``lr_schedule:
    linear``) a linear decay that reaches 0 one step past ``train.max_steps``: the last
    step runs at lr/(max_steps − warmup), as transformers' linear schedule does."""
    opt, total = trial.optimizer, trial.train.max_steps
    warmup = opt.warmup_steps
    if warmup and step <= warmup:
        return opt.lr * step / warmup
    if opt.lr_schedule == "linear" and total > warmup:
        return opt.lr * max(0.0, (total - step + 1) / (total - warmup))
    return opt.lr


@contextlib.contextmanager
def _checkpoint_directory(step: int):
    """Yields the folder the ranks write a checkpoint into, and the function that reports it.

    On a local or shared file system the checkpoint is written straight into the run's
    storage folder and reported in place (``CheckpointUploadMode.NO_UPLOAD``): staged in
    the node's ``/tmp`` first, it would need a second copy there (~1 TB at 70B) and a
    copy of every byte. Every rank writes its shards into the same folder, named by the
    step, so the ranks agree on it by construction.
    """
    import ray.train
    from pyarrow.fs import LocalFileSystem
    from ray.train import Checkpoint, CheckpointUploadMode

    storage = ray.train.get_context().get_storage()
    name = f"checkpoint_step{step:08d}"
    if isinstance(storage.storage_filesystem, LocalFileSystem):
        directory = storage.build_checkpoint_path_from_name(name)
        os.makedirs(directory, exist_ok=True)
        checkpoint = Checkpoint(directory, filesystem=storage.storage_filesystem)
        yield (
            directory,
            lambda metrics: ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_dir_name=name,
                checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD,
            ),
        )
        return
    with tempfile.TemporaryDirectory(prefix="qstudy-ckpt-") as directory:  # remote storage: Ray uploads it
        yield (
            directory,
            lambda metrics: ray.train.report(
                metrics, checkpoint=Checkpoint.from_directory(directory), checkpoint_dir_name=name
            ),
        )


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng_state(directory: str, rank: int) -> None:
    path = os.path.join(directory, _RNG_STATE.format(rank=rank))
    if not os.path.exists(path):  # a checkpoint written with another worker count
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@torch.no_grad()
def eval_sums(model, task, rank: int, world_size: int, device) -> list[float]:
    """This rank's eval sums: [token-loss sum, scored targets, correct, classified].

    eval_loss is the sum of every scored target's loss over the number of targets, so it
    is the same for any micro-batch size and worker count (a mean of per-batch means
    weighted by sequences is not: batches hold different numbers of tokens). A causal LM
    scores each label after the first that is not -100 (the model's own shift); a
    classifier scores one label per sequence.
    """
    loss_sum, scored, correct, total = 0.0, 0.0, 0.0, 0.0
    for batch, counted in task.eval_batches(rank, world_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        if not counted:  # padding: keeps ZeRO-3's collective forwards in step
            continue
        targets = float(task.scored_targets(batch["labels"]))
        if targets:  # a batch of prompts truncated to nothing scores no token (its loss is 0/0)
            loss_sum += float(out.loss) * targets
            scored += targets
        if task.kind == "classification":
            correct += float((out.logits.argmax(-1) == batch["labels"]).sum())
            total += float(batch["labels"].shape[0])
    return [loss_sum, scored, correct, total]


def _ended_metrics(checkpoint) -> dict[str, Any] | None:
    """The metrics of a status-only final checkpoint; None for none or a DeepSpeed one."""
    import json

    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, FINAL_STATUS)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)


def _quantum_parity(model, trial) -> dict[str, float]:
    """``aer_parity`` of the trial's attention circuits (max over layers), logged at start."""
    if not trial.quantum.enabled:
        return {}
    import deepspeed

    from qstudy.models import attention_modules
    from qstudy.quantum import aer_parity

    modules = [m for m in attention_modules(model).values() if hasattr(m, "quantum_a")]
    # ZeRO-3 keeps small ("persistent") parameters whole only once its forward trace is
    # complete: after a single forward they are partitioned again. Gather them (every rank
    # calls this); a no-op for parameters ZeRO-3 does not manage.
    with deepspeed.zero.GatheredParameters([p for m in modules for p in (m.quantum_a, m.quantum_b)]):
        worst = 0.0
        for module in modules:
            worst = max(
                worst,
                aer_parity(
                    trial.quantum.n_qubits,
                    trial.quantum.circuit_depth,
                    module.quantum_a.detach(),
                    module.quantum_b.detach(),
                ),
            )
    return {"aer_parity": worst}

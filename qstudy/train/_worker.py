"""One rank's run of a trial, as a recipe: set up (data, model, SuperpositionalAdamW
under DeepSpeed), resume or evaluate the untrained model, then train steps, evaluations
and checkpoints, every result through the run's session (``qstudy.train._session``).

Runs inside Ray Train workers, or (a one-worker study trial) in the Tune trial's own
process; everything heavy is imported here, not by the driver.
The checkpoint protocol (what is saved, and what a restarted worker reads back) is
``qstudy.train._checkpoint``.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from typing import Any

import torch

from qstudy.config import TrialStatus
from qstudy.train._checkpoint import (
    TrainingState,
    ended_metrics,
    load_checkpoint,
    report_checkpoint,
    report_final_status,
)

__all__ = ["train_loop_per_worker", "run_in_trial_process", "TrialRun", "eval_sums", "learning_rate"]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. ``config``: ``{"trial": TrialConfig as a dict, "submitted_at"}``."""
    from qstudy.config import TrialConfig
    from qstudy.train._session import TrainWorkerSession

    trial = TrialConfig.model_validate(config["trial"])
    TrialRun(trial, TrainWorkerSession()).run(config.get("submitted_at"))


def run_in_trial_process(trial, checkpoint_dir: str, submitted_at: float | None = None) -> None:
    """Runs a one-worker trial in the calling process (a study's Tune trial): metrics to
    Tune, checkpoints in ``checkpoint_dir`` (:class:`qstudy.train._session.TrialProcessSession`).

    The single rank's process group (gloo, or NCCL on a GPU) is made by the first trial
    and kept for the next ones the process runs: DeepSpeed caches the groups it derives
    from it (``deepspeed.utils.groups``), which a destroyed and re-made group leaves
    unregistered ("Group ... is not registered").
    """
    import torch.distributed as dist

    from qstudy.train._session import TrialProcessSession

    session = TrialProcessSession(checkpoint_dir, keep=trial.train.checkpoints_to_keep)
    if not dist.is_initialized():
        use_gpu = trial.resources.use_gpu and torch.cuda.is_available()
        if use_gpu:
            torch.cuda.set_device(0)  # Ray made the trial's GPU the only visible one
        # What a launcher (and Ray Train) sets for each rank: DeepSpeed asserts LOCAL_RANK.
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        dist.init_process_group("nccl" if use_gpu else "gloo", store=dist.HashStore(), rank=0, world_size=1)
    run = TrialRun(trial, session)
    try:
        run.run(submitted_at)
    finally:
        run.close()  # the next trial in this process must find the memory free


@dataclasses.dataclass
class _StepSums:
    """This rank's sums and clocks of one optimizer step, before they are reduced over ranks."""

    loss_sum: float  # Σ micro-batch losses
    tokens: int  # attention-mask tokens of the micro-batches
    step_s: float
    optimizer_s: float  # inside engine.step()
    perturbation_s_before: float  # the optimizer's perturbation clock when the step began
    attention_s_before: float  # the quantum attention's forward clock when the step began


class TrialRun:
    """One rank's run of a trial: its config, its rank, and once :meth:`set_up` ran, the
    DeepSpeed engine, the trial's data and the metrics every report repeats.

    Attributes:
        run_facts: metrics that do not change over the run (initial eval, model size,
            start-up times, ...), repeated in every report so the trial's last result
            carries them.
        train_loss_sum: Σ ``train_loss`` over the steps so far: ``mean_train_loss``,
            the paper's GSM8K measure.
    """

    def __init__(self, trial, session):
        self.trial = trial
        self.session = session  # where results and checkpoints go (qstudy.train._session)
        self.rank = session.rank
        self.world_size = session.world_size

    def run(self, submitted_at: float | None = None) -> None:
        """Runs the trial from its start or its last checkpoint to its last step.

        ``submitted_at``: when the driver built the trainer (``time.time()``), for the
        ``startup_*`` metrics.
        """
        entered = time.time()
        _import_worker_modules()
        checkpoint = self.session.get_checkpoint()
        ended = ended_metrics(checkpoint)
        if ended is not None:
            # Restored from a status-only final checkpoint (the trial diverged, or completed
            # with train.checkpoint_every_steps 0) by a study re-running it: nothing to resume,
            # hand the result on again.
            report_final_status(self.session, {**ended, "resumed_from_step": ended.get("step", 0)})
            return
        imported = time.time()
        self.data = self.build_data()
        data_built = time.time()
        model, ds_config = self.build_model()
        built = time.time()
        self.initialize_deepspeed(model, ds_config)
        initialized = time.time()
        state = self.resume(checkpoint)
        self.initial = state.initial
        self.train_loss_sum = state.train_loss_sum
        self.run_facts = self.collect_run_facts(model, state)
        # Where start-up time goes (benchmarks/trial_startup.py): trial submitted -> worker
        # entry -> imports -> data -> model -> deepspeed.initialize -> first optimizer step.
        self.run_facts.update(
            startup_imports_s=imported - entered,
            startup_data_s=data_built - imported,
            startup_model_s=built - data_built,
            startup_build_s=built - imported,  # data + model
            startup_deepspeed_init_s=initialized - built,
        )
        if submitted_at is not None:
            self.run_facts["startup_worker_entry_s"] = entered - submitted_at
        if state.step >= self.trial.train.max_steps:
            # Restored from the final checkpoint (a study re-running a trial whose driver
            # died after training ended): hand the final metrics on again, or the trial
            # would end without a result.
            self.report({**state.metrics, "resumed_from_step": state.step}, final=True)
            return
        self.train(state.step, submitted_at)

    def close(self) -> None:
        """Frees the engine, the model and the data for the next trial in this process:
        ``DeepSpeedEngine.destroy`` drops what DeepSpeed holds on to outside the engine
        (its optimizer's hooks, its module-name registry), without which the engine, the
        model and the optimizer states stay alive."""
        engine = self.__dict__.pop("engine", None)
        if engine is not None:
            engine.destroy()
        for name in ("superpositional", "data"):
            self.__dict__.pop(name, None)
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------- set-up
    def build_data(self):
        """The trial's data, tokenized once per node for all the trials that share it (the
        next trial with the same data, tokenizer and code reads the tensors back)."""
        from qstudy.data import data_cache_dir
        from qstudy.train._task import build_trial_data

        return build_trial_data(self.trial, cache_dir=data_cache_dir())

    def build_model(self):
        """The trial's model (seeded: the same initial model on every rank), built for
        ``self.data``; returns the model and its DeepSpeed config."""
        from qstudy.models import build_model
        from qstudy.train._deepspeed_config import deepspeed_config

        trial = self.trial
        use_gpu = trial.resources.use_gpu and torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if use_gpu else torch.device("cpu")
        ds_config = deepspeed_config(trial, use_gpu)
        torch.manual_seed(trial.seed)  # the same initial model on every rank
        model = build_model(trial, self.data, deepspeed_config=ds_config)  # ZeRO-3: partitioned as it is built
        return model, ds_config

    def initialize_deepspeed(self, model, ds_config: dict[str, Any]) -> None:
        """Wraps the model and a SuperpositionalAdamW over its trainable parameters in a
        DeepSpeed engine; ``self.superpositional`` is that optimizer (DeepSpeed's client one, not
        ``engine.optimizer``, the wrapper DeepSpeed steps)."""
        import deepspeed

        from qstudy.optim import SuperpositionalAdamW, bind_deepspeed, compile_pays_off

        params, kwargs = [p for p in model.parameters() if p.requires_grad], self.trial.optimizer.optimizer_kwargs()
        compile_step = compile_pays_off(_parameter_count(params), self.trial.train.max_steps, **kwargs)  # tiny: eager
        optimizer = SuperpositionalAdamW(params, **kwargs, compile_step=compile_step)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=ds_config, dist_init_required=False
        )
        self.superpositional = bind_deepspeed(self.engine)

    def resume(self, checkpoint) -> TrainingState:
        """The state to start from: the checkpoint's (loaded into the engine), or step 0
        with the untrained model's eval as its ``initial_*`` metrics."""
        if checkpoint is not None:
            return load_checkpoint(self.engine, checkpoint, self.rank)
        initial = {f"initial_{k}": v for k, v in self.evaluate(generate=False).items()}
        return TrainingState(step=0, initial=initial, metrics={}, train_loss_sum=0.0)

    def collect_run_facts(self, model, state: TrainingState) -> dict[str, Any]:
        """The metrics every report repeats, but the start-up times."""
        facts = {"resumed_from_step": state.step, **state.initial, **_quantum_parity(model, self.trial)}
        # Exact size (a tied embedding is yielded once) and where the ranks ran (the study
        # driver tags the MLflow run with it).
        facts["model_parameters"] = _parameter_count(model.parameters())
        facts["worker_nodes"] = self._worker_nodes()
        return facts

    # ---------------------------------------------------------------- training
    def train(self, start_step: int, submitted_at: float | None) -> None:
        """Steps ``start_step + 1 .. train.max_steps``: evaluates, checkpoints and reports
        on their cadences; a diverged step ends the trial."""
        train = self.trial.train
        # The metrics of the step about to be reported. A step not reported leaves its own
        # (the next step's overwrite them); a diverged step reports on top of them.
        step_metrics: dict[str, Any] = {}
        first_step = True
        loop_started = time.perf_counter()
        for step in range(start_step + 1, train.max_steps + 1):
            self._set_lr(step)
            last = step == train.max_steps
            evaluate = step % train.eval_every_steps == 0 or last
            save = self._checkpoint_due(step, last)
            reported = evaluate or save or step % train.log_every_steps == 0
            self.superpositional.measure_perturbation = reported  # the steps whose metrics are reported
            sums = self.train_step(step)
            if sums is None:
                step_metrics.update({"step": step, "train_loss": float("nan"), "status": TrialStatus.DIVERGED})
                self.report(step_metrics, final=True)
                return
            if first_step and submitted_at is not None:
                self.run_facts["startup_to_first_step_s"] = time.time() - submitted_at
            first_step = False
            step_metrics.update(self._step_metrics(step, sums))
            step_metrics["train_time_s"] = time.perf_counter() - loop_started  # steps + evals of this run
            if evaluate:
                step_metrics.update(self.evaluate())
                step_metrics["train_time_s"] = time.perf_counter() - loop_started
            if reported:
                step_metrics.update(self._perturbation_metrics())
                step_metrics["status"] = TrialStatus.COMPLETED if last else TrialStatus.RUNNING
                if save:
                    self.report(step_metrics, step=step)
                else:  # the last step without a DeepSpeed checkpoint still ends with a status one
                    self.report(step_metrics, final=last)
                step_metrics = {}

    def train_step(self, step: int) -> _StepSums | None:
        """One optimizer step over this rank's micro-batches; None when it diverged
        (a non-finite loss on any rank, or a step DeepSpeed skipped)."""
        from qstudy.models import quantum_attention_forward_time_s

        engine = self.engine
        t0 = time.perf_counter()
        loss_sum, tokens = 0.0, 0
        optimizer_s = 0.0
        perturbation_before = self.superpositional.perturbation_time_s
        attention_before = quantum_attention_forward_time_s()
        for micro in self.data.micro_batches(step, self.rank, self.world_size):
            micro = {k: v.to(self.device) for k, v in micro.items()}
            loss = engine(**micro).loss
            if not self._all_finite(loss):
                return None
            engine.backward(loss)
            t_opt = time.perf_counter()
            skipped = engine.skipped_steps
            engine.step()  # DeepSpeed steps the optimizer at the accumulation boundary
            optimizer_s += time.perf_counter() - t_opt
            if engine.skipped_steps > skipped:
                # DeepSpeed skips a step whose gradients hold inf/NaN (agreed over ranks).
                # With no fp16 loss scale to lower, that is divergence, not a scale probe:
                # left alone the trial would run on with frozen parameters.
                return None
            loss_sum += float(loss.detach())
            tokens += int(micro["attention_mask"].sum())
        return _StepSums(loss_sum, tokens, time.perf_counter() - t0, optimizer_s, perturbation_before, attention_before)

    def _step_metrics(self, step: int, sums: _StepSums) -> dict[str, float]:
        """The step's metrics, reduced over ranks; adds its loss to ``train_loss_sum``."""
        from qstudy.models import quantum_attention_forward_time_s

        step_s = sums.step_s
        global_loss, global_tokens = self._all_reduce_sum(
            [sums.loss_sum / max(1, self.data.accumulation), float(sums.tokens)]
        )

        def share(seconds: float) -> float:
            return seconds / step_s if step_s > 0 else float("nan")

        metrics = {
            "step": step,
            "train_loss": global_loss / self.world_size,
            "lr": self.engine.optimizer.param_groups[0]["lr"]
            if self.engine.optimizer is not None
            else self.superpositional.param_groups[0]["lr"],
            "step_time_s": step_s,
            "tokens_per_s": global_tokens / step_s if step_s > 0 else float("nan"),
            "optimizer_time_share": share(sums.optimizer_s),
            "perturbation_time_share": share(self.superpositional.perturbation_time_s - sums.perturbation_s_before),
            # forward only (circuit series + scores); the backward is not timed
            "quantum_attention_forward_time_share": share(quantum_attention_forward_time_s() - sums.attention_s_before),
        }
        self.train_loss_sum += metrics["train_loss"]
        metrics["mean_train_loss"] = self.train_loss_sum / step
        return metrics

    def _perturbation_metrics(self) -> dict[str, float]:
        """How big the perturbation was next to the AdamW update, on the step just taken.

        ``perturbation_to_adam_ratio`` = ‖lr·λ·Q‖ / ‖AdamW step‖ over the perturbed
        coordinates; ``perturbed_coordinates`` of them, ``nonzero_perturbation_coordinates``
        with Q ≠ 0 (with ``scope: leading`` and an embedding row whose token never occurs,
        0: λ can change nothing). Nothing is logged for λ = 0 or ``response: none``.
        """
        from qstudy.train._deepspeed_config import zero_stage

        stats = self.superpositional.perturbation_stats()
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

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, generate: bool = True) -> dict[str, float]:
        """``eval_loss`` over the held-out set, and ``eval_accuracy`` (classification) or,
        with ``generate``, ``gsm8k_accuracy`` by greedy generation; reduced over ranks."""
        engine, data = self.engine, self.data
        engine.eval()
        sums = eval_sums(engine, data, self.rank, self.world_size, self.device)
        loss_sum, scored, correct, total = self._all_reduce_sum(sums)
        metrics = {"eval_loss": loss_sum / max(1.0, scored)}
        if data.kind == "classification":
            metrics["eval_accuracy"] = correct / max(1.0, total)
        elif data.generate_count and generate:
            hits, asked = data.generate_accuracy(engine.module, self.rank, self.world_size, self.device, self._synced())
            hits, asked = self._all_reduce_sum([hits, asked])
            metrics["gsm8k_accuracy"] = hits / max(1.0, asked)
        engine.train()
        return metrics

    def _synced(self) -> bool:
        from qstudy.train._deepspeed_config import zero_stage

        return self.world_size > 1 and zero_stage(self.trial.deepspeed.preset) == 3

    # ---------------------------------------------------------------- reporting
    def report(self, metrics: dict[str, Any], step: int | None = None, final: bool = False) -> None:
        """Reports metrics (after the run facts); with ``step``, a DeepSpeed checkpoint of
        every rank's shard.

        A run's ``Result.metrics`` are those of its last checkpoint, so a trial that ends
        without a DeepSpeed one (diverged, or ``checkpoint_every_steps`` 0) reports a small
        status checkpoint instead (``final``).
        """
        metrics = {**self.run_facts, **metrics}
        if self.device.type == "cuda":  # next to `qstudy plan`'s per-GPU estimate
            metrics["gpu_max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if final:
            report_final_status(self.session, metrics)
            return
        if step is None:
            self.session.report(metrics)
            return
        state = TrainingState(step=step, initial=self.initial, metrics=metrics, train_loss_sum=self.train_loss_sum)
        report_checkpoint(self.session, self.engine, state, metrics)

    # ---------------------------------------------------------------- collectives
    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank."""
        import torch.distributed as dist

        flag = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self.device)
        if self.world_size > 1:
            dist.all_reduce(flag)
        return flag.item() == 0.0

    def _all_reduce_sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(t)
        return t.tolist()

    def _worker_nodes(self) -> str:
        """The Ray node ids of all ranks: sorted, de-duplicated, comma-joined."""
        import ray
        import torch.distributed as dist

        nodes = [ray.get_runtime_context().get_node_id()]
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, nodes[0])
            nodes = gathered
        return ",".join(sorted(set(nodes)))


def _parameter_count(params) -> int:
    """Elements of ``params`` across all ranks: ZeRO-3 leaves ``p.numel()`` 0 and keeps the
    full size as ``p.ds_numel``."""
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in params)


def _import_worker_modules() -> None:
    """Imports what the run needs up front, so ``startup_imports_s`` times the imports alone
    and ``startup_data_s``, ``startup_model_s`` and ``startup_deepspeed_init_s`` the work.

    transformers imports lazily: its first tokenizer and its first Llama would otherwise
    import it (~1.5 s) and its Llama modelling code with torch._dynamo (~1.5 s) inside
    the data and model timers. ``deepspeed.initialize`` imports DeepSpeed's Muon optimizer
    for its ZeRO optimizer check, whose module-level ``torch.compile`` imports
    torch._inductor (~1 s, nearly all of deepspeed.initialize on a tiny model).
    """
    import deepspeed  # noqa: F401  inside the worker: importing it in the driver has broken before (https://github.com/ray-project/ray/issues/50406)
    import ray.train  # noqa: F401
    import torch.distributed  # noqa: F401
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: F401  resolves the lazy modules

    import qstudy.models  # noqa: F401
    import qstudy.optim  # noqa: F401
    import qstudy.train._deepspeed_config  # noqa: F401
    import qstudy.train._task  # noqa: F401

    try:
        import deepspeed.runtime.zero.muon.muon_optimizer  # noqa: F401
    except ImportError:  # a DeepSpeed without Muon has nothing to import here
        pass


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

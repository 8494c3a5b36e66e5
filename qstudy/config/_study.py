"""The study config: one YAML file in ``search_spaces/`` describes a whole study.

A study searches dotted paths into the trial config (``optimizer.quantum_weight``,
``quantum.n_qubits``, ``seed``, ...) with Optuna distributions, runs its ``baselines``
first (the AdamW control: ``{optimizer.quantum_weight: 0.0}``), and fixes everything else
in ``trial:``. A comparison study instead names ``arms`` (sets of the same dotted
overrides, one of them ``control``) and the ``seeds`` every arm runs with, and runs each
arm once per seed. A search study may end with ``confirm:``: its top_k configurations and
the control run again on fresh seeds. Every problem of a file is collected and raised as
one ``ConfigError``:

    search_spaces/paper.yaml: space.optimizer.quantum_weight.high: must be >= low, got low=1.0, high=0.5

A searched range is checked by validating the trial config with its ends (and each
choice, and each baseline) put in, so a value the trial would refuse is refused here,
before any Ray resource or MLflow run exists.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator, model_validator

from qstudy.config._claims import ClaimConfig, PaperGap, claim_problems
from qstudy.config._errors import ConfigError
from qstudy.config._loader import (
    ConfigModel,
    Item,
    Problems,
    Unchecked,
    error_items,
    format_line,
    load_yaml,
    touches,
    validate_partial,
)
from qstudy.config._trial import PathCheck, TrialConfig

__all__ = [
    "CONTROL_ARM",
    "ConfirmConfig",
    "OBJECTIVE_METRICS",
    "SAMPLERS",
    "ObjectiveConfig",
    "ParamSpec",
    "SamplerConfig",
    "SchedulerConfig",
    "StudyConfig",
    "TrackingConfig",
    "apply_overrides",
    "is_study_file",
    "load_study_config",
]

# The arm every comparison study must name: the others are compared with it, seed for seed.
CONTROL_ARM = "control"
SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid", "qmc")
# Metrics a trial reports that can be an objective, with their natural direction.
OBJECTIVE_METRICS = {
    "eval_loss": "min",
    "train_loss": "min",
    "mean_train_loss": "min",  # mean of every step's training loss over the run: the paper's GSM8K measure
    "eval_accuracy": "max",
    "gsm8k_accuracy": "max",
}


def _number(value: Any) -> Any:
    """Accepts an int or float (numeric strings too: PyYAML reads ``1e-5`` as a string)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    raise ValueError(f"must be a number, got {value!r}")


Number = Annotated[int | float | None, BeforeValidator(_number)]


# ----------------------------------------------------------------------------- sections


class ObjectiveConfig(ConfigModel):
    metric: str = Field(
        "eval_loss",
        description="reported metric to optimise: eval_loss, train_loss, mean_train_loss, eval_accuracy (data.task classification) "
        "or gsm8k_accuracy (GSM8K tasks with data.generate_examples > 0)",
    )
    mode: Literal["min", "max"] = Field("min", description="min for losses, max for accuracies")

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        if touches(unchecked, "metric"):
            return []
        natural = OBJECTIVE_METRICS.get(self.metric)
        if natural is None:
            return [("metric", f"must be one of {', '.join(OBJECTIVE_METRICS)}, got {self.metric!r}")]
        if not touches(unchecked, "mode") and self.mode != natural:
            kind = "a loss" if natural == "min" else "an accuracy"
            return [("mode", f"{self.metric} is {kind}: use {natural}, got {self.mode!r}")]
        return []


class SamplerConfig(ConfigModel):
    type: Literal[SAMPLERS] = Field(
        "tpe",
        description="Optuna sampler: tpe (default, mixed spaces), gp (few expensive trials), cmaes (continuous), "
        "random, grid (every point of a finite space), qmc (quasi-random cover)",
    )
    seed: int = Field(0, ge=0, description="sampler seed: same seed, same suggestions in the same order")
    n_startup_trials: int | None = Field(
        None, ge=0, description="random trials before tpe/gp/cmaes start modelling (None: Optuna's default)"
    )

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        if touches(unchecked, "type") or self.n_startup_trials is None or self.type in ("tpe", "gp", "cmaes"):
            return []
        return [("n_startup_trials", f"only tpe, gp and cmaes have start-up trials, got sampler.type {self.type!r}")]


class SchedulerConfig(ConfigModel):
    type: Literal["asha", "none"] = Field(
        "none", description="asha stops weak trials early (saves compute, biases against slow starters); none runs all"
    )
    grace_period: int = Field(
        1, ge=1, description="asha: optimizer steps a trial makes before it can be stopped (ASHA's time is `step`)"
    )
    reduction_factor: float = Field(2, gt=1, description="asha: 1/reduction_factor of the trials go on at each rung")
    max_t: int | None = Field(
        None, ge=1, description="asha: the last rung, in optimizer steps; None: trial.train.max_steps"
    )

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        problems = []
        if self.type == "none" and not touches(unchecked, "type"):
            # A value that failed is not in model_fields_set: it was left out.
            for key in sorted(self.model_fields_set - {"type"}):
                problems.append((key, "only used by scheduler.type asha, got type 'none'"))
        if touches(unchecked, "grace_period", "max_t"):
            return problems
        if self.max_t is not None and self.grace_period > self.max_t:
            problems.append(
                ("grace_period", f"must be <= max_t, got grace_period={self.grace_period}, max_t={self.max_t}")
            )
        return problems


class TrackingConfig(ConfigModel):
    uri: str = Field(
        "sqlite:///mlruns.db",
        description="MLflow tracking URI; a relative sqlite path is made absolute against the launch directory",
    )
    experiment: str | None = Field(None, description="MLflow experiment (None: the study name)")


class ParamSpec(ConfigModel):
    """One searched setting, mirroring ``optuna.distributions``."""

    type: Literal["float", "int", "categorical"] = Field(
        description="float (FloatDistribution), int (IntDistribution) or categorical (CategoricalDistribution)"
    )
    low: Number = Field(None, description="float/int: smallest value (inclusive)")
    high: Number = Field(None, description="float/int: largest value (inclusive)")
    log: bool = Field(False, description="float/int: sample log-uniformly (needs low > 0); for scales like lr")
    step: Number = Field(None, description="float/int: spacing of the values (makes a float space a finite grid)")
    choices: list[Any] | None = Field(None, description="categorical: the values (str, int, float, bool or null)")

    @field_validator("choices")
    @classmethod
    def _scalar_choices(cls, choices: list[Any] | None) -> list[Any] | None:
        for value in choices or ():
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"must be str, int, float, bool or null (Optuna's rule), got {value!r}")
        return choices

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        # A value that failed its own validation is None here (log: False): the checks below
        # treat None as "not given", so each skips a value in `unchecked` explicitly.
        problems: list[Item] = []
        if self.type == "categorical":
            if not self.choices and not touches(unchecked, "choices"):
                problems.append(
                    ("choices", f"type categorical needs a non-empty list of choices, got {self.choices!r}")
                )
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    problems.append((key, f"not used by type categorical (use choices), got {getattr(self, key)!r}"))
            if self.log:
                problems.append(("log", "not used by type categorical, got True"))
            return problems
        if self.choices is not None:
            problems.append(("choices", f"only for type categorical, got type {self.type!r}"))
        for key in ("low", "high"):
            value = getattr(self, key)
            if touches(unchecked, key):
                continue
            if value is None:
                problems.append((key, f"required for type {self.type}"))
            elif self.type == "int" and not isinstance(value, int):
                problems.append((key, f"must be an integer for type int, got {value!r}"))
            elif not math.isfinite(value):
                problems.append((key, f"must be finite, got {value!r}"))
        if self.step is not None:
            if self.type == "int" and not isinstance(self.step, int):
                problems.append(("step", f"must be an integer for type int, got {self.step!r}"))
            elif not self.step > 0:
                problems.append(("step", f"must be > 0, got {self.step!r}"))
        if problems or touches(unchecked, "low", "high", "step"):
            return problems  # the range checks below need a valid low, high and step
        low, high, step = self.low, self.high, self.step
        if high < low:
            problems.append(("high", f"must be >= low, got low={low!r}, high={high!r}"))
        if self.log and low <= 0:
            problems.append(("low", f"must be > 0 with log: true, got {low!r}"))
        if self.log and step is not None and not (self.type == "int" and step == 1):
            problems.append(("step", f"cannot be combined with log: true (Optuna's rule), got {step!r}"))
        if step is not None and high >= low and not problems:
            n = round((high - low) / step)
            if abs(low + n * step - high) > 1e-9 * max(1.0, abs(high)):
                problems.append(
                    ("high", f"high - low must be a multiple of step, got low={low!r}, high={high!r}, step={step!r}")
                )
        return problems

    @property
    def is_finite(self) -> bool:
        """True if the space has finitely many values (a grid): categorical, int, float with step."""
        return self.type != "float" or self.step is not None

    def grid_values(self) -> list[Any]:
        """Every value of a finite space, in order (for Optuna's GridSampler)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            raise ValueError("a float space without step has no finite grid")
        n = round((self.high - self.low) / self.step)
        # Rounded so 0.1 * 3 is 0.3: grid points become MLflow params and YAML values.
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def bounds(self) -> list[tuple[str, Any]]:
        """The values that bound what the space can produce, each with its key: low, high or choices.i."""
        if self.type == "categorical":
            return [(f"choices.{i}", value) for i, value in enumerate(self.choices)]
        return [("low", self.low), ("high", self.high)]

    def contains(self, value: Any) -> bool:
        """True if ``value`` is a point of the space (categorical: one of the choices)."""
        if self.type == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


class ConfirmConfig(ConfigModel):
    """A search study's confirm phase: its best configurations run again on fresh seeds.

    The best of N noisy trials is partly the luckiest draw of initialisation and batch
    order (the winner's curse); the mean over seeds it was not chosen on is not.
    """

    top_k: int = Field(
        1,
        ge=1,
        description="the search's best distinct configurations to run again (the control is never one of "
        "them); each costs len(seeds) trials",
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="required: fresh trial seeds (model init, batch order), none the search ran with: the top_k "
        "and the control run once on each, so they are compared seed for seed; more seeds, a tighter mean",
    )

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        if touches(unchecked, "seeds"):
            return []
        if "seeds" not in self.model_fields_set:
            return [
                (
                    "seeds",
                    "required: the fresh trial seeds the top configurations and the control run with, "
                    "e.g. [101, 102, 103]",
                )
            ]
        problems: list[Item] = []
        if not self.seeds:
            problems.append(("seeds", "needs at least one fresh seed, e.g. [101, 102, 103], got []"))
        return problems + _seed_problems(self.seeds, "each configuration runs once per seed")


# -------------------------------------------------------------------------------- study


class StudyConfig(ConfigModel):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="study name: Ray experiment, MLflow parent run, output folder (default: the file's stem)",
    )
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig, description="what the search optimises")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="how Optuna suggests trials")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Tune trial scheduler")
    num_samples: int = Field(
        ge=1, description="trials in all, baselines included; with arms: len(arms) x len(seeds), derived when left out"
    )
    max_concurrent: int = Field(
        1, ge=1, description="trials at once; more is faster, but the sampler learns from fewer finished trials"
    )
    trial_timeout_s: float = Field(3600, gt=0, description="wall-clock limit per trial; a stuck trial ends as failed")
    trial_retries: int = Field(
        0, ge=0, description="Tune-level retries of a failed trial (worker restarts are trial.resources.max_failures)"
    )
    space: dict[str, ParamSpec] = Field(
        default_factory=dict, description="searched settings: dotted path into the trial config -> distribution"
    )
    baselines: list[dict[str, Any]] = Field(
        default_factory=list,
        description="trials run first, each mapping dotted paths to values (AdamW control: "
        "{optimizer.quantum_weight: 0.0}); searched keys it leaves out are sampled",
    )
    confirm: ConfirmConfig | None = Field(
        None,
        description="search study: after num_samples trials, run the top_k configurations and the control "
        "(baselines.0) again on fresh seeds and name the best by its mean over them (None: no confirm phase)",
    )
    arms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="comparison study: arm name -> dotted trial overrides (as baselines), one arm named control; "
        "every arm runs once per seed, so it is compared with the control seed for seed (no space, no baselines)",
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="comparison study: the trial seed (model init, batch order) each arm runs with; the same "
        "seeds for every arm, so arm and control differ only by their overrides",
    )
    claims: list[ClaimConfig] = Field(
        default_factory=list,
        description="comparison study: the paper's claims, each checked by `qstudy report` (measured value, 95% "
        "interval, verdict)",
    )
    paper_gaps: list[PaperGap] = Field(
        default_factory=list,
        description="where the paper leaves the set-up undefined and what this study chose: quoted by the report",
    )
    trial: TrialConfig = Field(description="the fixed trial settings; searched, baseline and arm keys override them")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="where MLflow records the study")
    storage_path: str = Field(
        "qstudy_runs", description="Ray Tune / Train results and checkpoints (relative: to the launch directory)"
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_num_samples(cls, data: Any) -> Any:
        return _with_derived_num_samples(data)

    @property
    def is_comparison(self) -> bool:
        """True for a comparison study (``arms`` and ``seeds``), False for a search."""
        return bool(self.arms)

    def comparison_trials(self) -> list[tuple[str, int, dict[str, Any]]]:
        """Every ``(arm, seed, overrides)`` of a comparison study, in the order they run.

        Seeds-major, control first within each seed: trials run in this order (as many at
        once as ``max_concurrent``), so a study stopped part-way holds whole seeds, each
        with its control, rather than arms without a control to pair them with; and arm
        and control of a seed run close in time, on a machine in the same state.
        """
        names = [CONTROL_ARM, *(name for name in self.arms if name != CONTROL_ARM)]
        return [(name, seed, {**self.arms[name], "seed": seed}) for seed in self.seeds for name in names]

    @property
    def confirm_trial_count(self) -> int:
        """Trials the confirm phase runs at most: the top_k and the control on each seed
        (fewer when the search completes fewer distinct configurations); 0 without confirm."""
        if self.confirm is None:
            return 0
        return (self.confirm.top_k + 1) * len(self.confirm.seeds)

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``tracking.experiment``, else the study name."""
        return self.tracking.experiment or self.name

    def storage_path_absolute(self, base_dir: str | Path | None = None) -> str:
        """``storage_path`` made absolute against ``base_dir`` (default: the current directory)."""
        path = Path(self.storage_path).expanduser()
        return str(path if path.is_absolute() else (Path(base_dir or Path.cwd()) / path).resolve())

    def grid_size(self) -> int | None:
        """Points of the space's grid (product of every entry's values); None if not finite."""
        if not all(spec.is_finite for spec in self.space.values()):
            return None
        return math.prod(len(spec.grid_values()) for spec in self.space.values())

    def asha_max_t(self) -> int:
        """ASHA's last rung in optimizer steps: ``scheduler.max_t``, else ``train.max_steps``.

        ASHA's time is the reported ``step``, not Tune's ``training_iteration``, which
        keeps counting across a worker restart (docs/stack-notes.md#worker-restarts-and-training_iteration) and would misplace rungs.
        """
        return self.scheduler.max_t or self.trial.train.max_steps

    def trial_config(self, values: dict[str, Any]) -> TrialConfig:
        """The fixed trial config with ``values`` (a sampled point, a baseline) set."""
        return apply_overrides(self.trial, values)

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        return _study_problems(self, unchecked)


# ------------------------------------------------------------------------- cross checks


def _study_problems(study: StudyConfig, unchecked: Unchecked) -> list[Item]:
    """Cross-field problems as ``(dotted key, message)``; checks that read an unchecked value skip it."""
    trial_bad = frozenset(loc[1:] for loc in unchecked if loc[:1] == ("trial",))
    grid = not touches(unchecked, "sampler.type") and study.sampler.type == "grid"
    space_bad: dict[str, Unchecked] = {}  # entry -> its bad values, relative to it
    for loc in unchecked:
        if loc[:1] == ("space",) and len(loc) > 1:
            space_bad[loc[1]] = space_bad.get(loc[1], frozenset()) | {loc[2:]}
    # An entry (or the space) with a problem of its own: the checks of the whole space are skipped.
    space_ok = not any(loc[:1] == ("space",) for loc in unchecked)
    problems: list[Item] = []
    # Arms given (even bad ones): a comparison study, which searches nothing.
    comparison = bool(study.arms) or touches(unchecked, "arms")
    if not study.space and space_ok and not comparison:
        example = "optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}"
        problems.append(
            (
                "space",
                f"must name at least one searched setting, e.g. {example}, or compare named arms (arms: and seeds:)",
            )
        )
    trial_ok = not touches(unchecked, "trial")
    problems += _comparison_problems(study, unchecked, trial_ok, trial_bad)
    train_examples = None if touches(unchecked, "trial.data.train_examples") else study.trial.data.train_examples
    problems += claim_problems(study.claims, study.arms, OBJECTIVE_METRICS, train_examples, unchecked)
    if not touches(unchecked, "objective.metric", "trial.data.task", "trial.data.generate_examples"):
        problems += _objective_problems(study)
    scheduler = study.scheduler
    if (
        not touches(unchecked, "scheduler.type", "scheduler.grace_period", "trial.train.max_steps")
        and scheduler.type == "asha"
        and scheduler.grace_period > study.trial.train.max_steps
    ):
        problems.append(
            (
                "scheduler.grace_period",
                f"must be <= trial.train.max_steps = {study.trial.train.max_steps} "
                f"(ASHA's time is the optimizer step), got {scheduler.grace_period}",
            )
        )
    space_problems = _space_problems(study, grid, trial_ok, trial_bad, space_bad)
    problems += space_problems
    space_ok = space_ok and not space_problems
    for i, baseline in enumerate(study.baselines):
        if not touches(unchecked, f"baselines.{i}"):
            problems += _baseline_problems(study, i, baseline, grid and space_ok, trial_ok, trial_bad)
    if not touches(unchecked, "num_samples", "baselines") and not comparison:
        problems += _count_problems(study, grid and space_ok, not touches(unchecked, "max_concurrent"))
    if study.confirm is not None:
        problems += _confirm_problems(study, comparison, unchecked)
    return problems


def _confirm_problems(study: StudyConfig, comparison: bool, unchecked: Unchecked) -> list[Item]:
    """The problems of ``confirm`` that need the rest of the study: a search with a control,
    enough sampled trials to pick the top_k from, seeds the search did not run with."""
    confirm = study.confirm
    if comparison:
        arms = "" if touches(unchecked, "arms") else f" {', '.join(study.arms)}"
        return [
            (
                "confirm",
                "only for a search study: a comparison study (arms) already runs every arm on each of "
                f"its seeds and calls no trial best, got confirm with arms{arms}",
            )
        ]
    problems: list[Item] = []
    baselines_ok = not touches(unchecked, "baselines")
    if baselines_ok and not study.baselines:
        problems.append(
            (
                "confirm",
                "needs a control to run beside the top configurations: baselines.0, e.g. "
                "baselines: [{quantum.enabled: false, optimizer.quantum_weight: 0.0}], got no baselines",
            )
        )
    elif baselines_ok and not touches(unchecked, "num_samples", "confirm.top_k"):
        n, n_baselines = study.num_samples, len(study.baselines)
        if n >= n_baselines and confirm.top_k > n - n_baselines:
            problems.append(
                (
                    "confirm.top_k",
                    f"must be <= num_samples - len(baselines) = {n} - {n_baselines} = "
                    f"{n - n_baselines} (the trials the search samples), got {confirm.top_k}",
                )
            )
    # Seeds the search ran with: the fixed trial's, a searched seed's, a baseline's.
    used: list[tuple[str, Any]] = []  # (where, the seed or seeds it names)
    if not touches(unchecked, "trial.seed"):
        used.append(("trial.seed", study.trial.seed))
    spec = study.space.get("seed")
    if spec is not None and not any(loc[:2] == ("space", "seed") for loc in unchecked):
        used.append(("space.seed", spec))
    for i, baseline in enumerate(study.baselines):
        if "seed" in baseline and not touches(unchecked, f"baselines.{i}"):
            used.append((f"baselines.{i}.seed", baseline["seed"]))
    for i, seed in enumerate(confirm.seeds):
        reasons = []
        for where, what in used:
            if isinstance(what, ParamSpec):
                if what.contains(seed):
                    span = f"choices {what.choices!r}" if what.type == "categorical" else f"{what.low}..{what.high}"
                    reasons.append(f"space.seed searches {span}")
            elif what == seed:
                reasons.append(f"{where} is {what!r}")
        if reasons:
            problems.append(
                (
                    f"confirm.seeds.{i}",
                    "must be a seed no search trial ran with (the top configurations "
                    f"were picked on those seeds), got {seed}: {'; '.join(reasons)}",
                )
            )
    return problems


def _comparison_problems(study: StudyConfig, unchecked: Unchecked, trial_ok: bool, trial_bad: Unchecked) -> list[Item]:
    """The problems of ``arms`` and ``seeds``, and of the settings a comparison study cannot take."""
    given = study.model_fields_set
    if not study.arms and not touches(unchecked, "arms"):
        if "arms" in given:
            return [
                (
                    "arms",
                    f"must name at least the {CONTROL_ARM} arm, e.g. {{{CONTROL_ARM}: {{}}, "
                    "lam_0.5: {optimizer.quantum_weight: 0.5}}, got {}",
                )
            ]
        if "seeds" in given and not touches(unchecked, "seeds"):
            return [
                (
                    "seeds",
                    f"only used with arms (a comparison study); a search study sets trial.seed or "
                    f"searches seed, got {study.seeds!r}",
                )
            ]
        return []
    problems: list[Item] = []
    if study.space:
        problems.append(
            (
                "space",
                "a comparison study (arms) runs fixed trials and searches nothing: "
                f"put the settings to compare into arms, got space {', '.join(study.space)}",
            )
        )
    if study.baselines:
        problems.append(
            (
                "baselines",
                f"a comparison study (arms) has its control among its arms ({CONTROL_ARM}): "
                f"put each baseline into arms, got {len(study.baselines)} baseline(s)",
            )
        )
    if "sampler" in given:
        problems.append(
            ("sampler", "a comparison study (arms) samples nothing: every arm runs once per seed, leave sampler out")
        )
    if not touches(unchecked, "scheduler.type") and study.scheduler.type != "none":
        problems.append(
            (
                "scheduler.type",
                "a comparison study (arms) runs every trial to its last step: an early "
                "stop would leave an arm without the seeds its control has, use none, "
                f"got {study.scheduler.type!r}",
            )
        )
    if not touches(unchecked, "seeds"):
        if "seeds" not in given:
            problems.append(("seeds", "required with arms: the trial seeds every arm runs with, e.g. [0, 1, 2]"))
        elif not study.seeds:
            problems.append(("seeds", "a comparison study needs at least one seed, e.g. [0, 1, 2], got []"))
        problems += _seed_problems(study.seeds, "each arm runs once per seed")
    if touches(unchecked, "arms"):
        return problems
    if CONTROL_ARM not in study.arms:
        problems.append(
            (
                "arms",
                f"must include an arm named {CONTROL_ARM} (the one every other arm is compared "
                f"with, seed for seed; {CONTROL_ARM}: {{}} runs trial: as it is), got arms "
                f"{', '.join(study.arms)}",
            )
        )
    configs: dict[str, dict[str, Any]] = {}  # arm -> its trial config, for the arms whose overrides validated
    for name, overrides in study.arms.items():
        arm_problems = _arm_problems(study, name, overrides, trial_ok, trial_bad)
        problems += arm_problems
        if trial_ok and not arm_problems:
            configs[name] = apply_overrides(study.trial, overrides).model_dump()
    seen: dict[str, str] = {}
    for name, config in configs.items():
        twin = next((other for other, cfg in seen.items() if cfg == config), None)
        if twin is not None:
            problems.append(
                (
                    f"arms.{name}",
                    f"runs the same trial config as arms.{twin}: it would measure nothing "
                    f"the other does not, got {study.arms[name]!r}",
                )
            )
        else:
            seen[name] = config
    if not touches(unchecked, "num_samples", "seeds") and study.seeds:
        n_arms, n_seeds = len(study.arms), len(study.seeds)
        if study.num_samples != n_arms * n_seeds:
            problems.append(
                (
                    "num_samples",
                    f"a comparison study runs each of its {n_arms} arms once per seed: must "
                    f"be {n_arms} x {n_seeds} = {n_arms * n_seeds} (or left out), got {study.num_samples}",
                )
            )
        elif not touches(unchecked, "max_concurrent") and study.max_concurrent > study.num_samples:
            problems.append(
                ("max_concurrent", f"must be <= num_samples ({study.num_samples}), got {study.max_concurrent}")
            )
    return problems


def _seed_problems(seeds: list[int], why_distinct: str) -> list[Item]:
    """Negative and repeated seeds of a ``seeds`` list. Checked here, not by the field, so a
    negative seed does not hide a repeated one."""
    problems = [(f"seeds.{i}", f"must be >= 0, got {seed}") for i, seed in enumerate(seeds) if seed < 0]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        problems.append(
            ("seeds", f"must be distinct ({why_distinct}), got {seeds!r} ({', '.join(map(str, repeated))} repeated)")
        )
    return problems


def _arm_problems(
    study: StudyConfig, name: str, overrides: dict[str, Any], trial_ok: bool, trial_bad: Unchecked
) -> list[Item]:
    where = f"arms.{name}"
    if not overrides and name != CONTROL_ARM:
        return [
            (
                where,
                f"no overrides: it would run the {CONTROL_ARM}'s trials again; set what this arm changes, "
                "e.g. optimizer.quantum_weight: 0.5, got {}",
            )
        ]
    problems = []
    for key, value in overrides.items():
        if key == "seed":
            problems.append(
                (
                    f"{where}.seed",
                    "set by seeds: (every arm runs with each of them, so arms are paired "
                    f"by seed), not per arm, got {value!r}",
                )
            )
            continue
        problem = _resolve_problem(str(key))
        if problem:
            problems.append((f"{where}.{key}", problem))
    if trial_ok and not problems:
        problems += _refused_overrides(study.trial, where, overrides, trial_bad)
    return problems


def _objective_problems(study: StudyConfig) -> list[Item]:
    metric, data = study.objective.metric, study.trial.data
    if metric == "eval_accuracy" and data.task != "classification":
        return [
            (
                "objective.metric",
                f"eval_accuracy is reported only for data.task classification, got trial.data.task {data.task!r}",
            )
        ]
    if metric == "gsm8k_accuracy" and (data.task == "classification" or data.generate_examples == 0):
        return [
            (
                "objective.metric",
                "gsm8k_accuracy is reported only for GSM8K tasks with data.generate_examples > 0, "
                f"got trial.data.task {data.task!r}, generate_examples {data.generate_examples}",
            )
        ]
    return []


def _space_problems(
    study: StudyConfig, grid: bool, trial_ok: bool, trial_bad: Unchecked, space_bad: dict[str, Unchecked]
) -> list[Item]:
    problems = []
    # An entry that could not be built at all (no valid type) still names a setting to check.
    dropped = [key for key in space_bad if key not in study.space]
    for key in [*study.space, *dropped]:
        where = f"space.{key}"
        problem = _resolve_problem(key)
        if problem:
            problems.append((where, problem))
            continue
        spec, bad = study.space.get(key), space_bad.get(key, frozenset())
        if spec is None:
            continue
        if not touches(bad, "type"):
            problem = _kind_problem(key, spec)
            if problem:
                problems.append((f"{where}.type", problem))
                continue
        if grid and not bad and not spec.is_finite:
            problems.append(
                (
                    where,
                    "sampler.type grid needs a finite space: categorical, int, or float with step, "
                    f"got type float without step (low={spec.low!r}, high={spec.high!r})",
                )
            )
        if not trial_ok or touches(bad, "choices"):
            continue
        # Each end of the range (each choice) put into the fixed trial: what would the trial say?
        for bound, value in spec.bounds():
            if touches(bad, bound.split(".")[0]):
                continue
            for loc, message in _override_problems(study.trial, {key: value}, trial_bad):
                if loc != key:  # another setting (or the whole trial) refuses this value
                    message = f"with {key}={value!r}: {loc + ': ' if loc else ''}{message}"
                problems.append((f"{where}.{bound}", message))
    return problems


def _baseline_problems(
    study: StudyConfig, i: int, baseline: dict[str, Any], grid: bool, trial_ok: bool, trial_bad: Unchecked
) -> list[Item]:
    where = f"baselines.{i}"
    if not baseline:
        return [(where, "an empty baseline is no control; set e.g. optimizer.quantum_weight: 0.0")]
    problems = []
    for key, value in baseline.items():
        problem = _resolve_problem(str(key))
        spec = study.space.get(key)
        if problem:
            problems.append((f"{where}.{key}", problem))
        elif spec is not None and spec.type == "categorical" and spec.choices and not spec.contains(value):
            # Optuna refuses a fixed categorical value outside the choices.
            problems.append((f"{where}.{key}", f"must be one of the space's choices {spec.choices!r}, got {value!r}"))
    if grid:
        missing = [key for key in study.space if key not in baseline]
        if missing:
            problems.append(
                (
                    where,
                    "sampler.type grid runs a baseline only if it sets every searched key "
                    f"(Optuna's GridSampler), missing: {', '.join(missing)}",
                )
            )
    if trial_ok and not any(key.startswith(f"{where}.") and "unknown trial setting" in m for key, m in problems):
        problems += _refused_overrides(study.trial, where, baseline, trial_bad)
    return problems


def _refused_overrides(trial: TrialConfig, where: str, overrides: dict[str, Any], trial_bad: Unchecked) -> list[Item]:
    """What the trial says of ``overrides`` (a baseline, an arm at ``where``), each problem
    under ``where.KEY`` when it is about one of them, else under ``where``."""
    problems = []
    for loc, message in _override_problems(trial, overrides, trial_bad):
        if loc in overrides:
            problems.append((f"{where}.{loc}", message))
        else:  # another setting (or the whole trial) refuses the values put in
            problems.append((where, f"{loc}: {message}" if loc else message))
    return problems


def _count_problems(study: StudyConfig, grid: bool, max_concurrent_ok: bool) -> list[Item]:
    n, n_baselines = study.num_samples, len(study.baselines)
    problems = []
    if n < n_baselines:
        problems.append(
            (
                "num_samples",
                f"must be >= the number of baselines ({n_baselines}), which run first and count as trials, got {n}",
            )
        )
    if max_concurrent_ok and study.max_concurrent > n:
        problems.append(("max_concurrent", f"must be <= num_samples ({n}), got {study.max_concurrent}"))
    size = study.grid_size() if grid and study.space else None
    if size is not None and n > size + n_baselines:
        problems.append(
            (
                "num_samples",
                f"sampler.type grid has {size} points + {n_baselines} baselines "
                f"= {size + n_baselines} trials at most, got {n}",
            )
        )
    return problems


def _field_at(path: str):
    """(FieldInfo of the trial setting at ``path``, None) or (None, problem)."""
    parts = path.split(".")
    model: type[BaseModel] = TrialConfig
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        field = model.model_fields.get(part)
        if field is None:
            if depth == 0:
                sections = [n for n, f in model.model_fields.items() if _submodel(f.annotation)]
                leaves = [n for n in model.model_fields if n not in sections]
                return None, (
                    f"unknown trial setting; allowed at the top level: {', '.join(leaves)}, "
                    f"or a dotted key into {', '.join(sections)} (e.g. optimizer.lr)"
                )
            return None, f"unknown trial setting; allowed under {here}: {', '.join(model.model_fields)}"
        sub = _submodel(field.annotation)
        last = depth == len(parts) - 1
        if last:
            if sub is not None:
                return (
                    None,
                    f"names the section {path}, not a setting; allowed under {path}: {', '.join(sub.model_fields)}",
                )
            return field, None
        if sub is None:
            return None, f"unknown trial setting; {'.'.join(parts[: depth + 1])} is a setting, not a section"
        model = sub
    raise AssertionError("unreachable")


def _resolve_problem(path: str) -> str | None:
    return _field_at(path)[1]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _kind_problem(path: str, spec: ParamSpec) -> str | None:
    """A type mismatch between a space and the setting it searches."""
    field, _ = _field_at(path)
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        kind = "bool"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    elif annotation is str or typing.get_origin(annotation) is Literal:
        kind = "str"
    else:
        return (
            f"{path} is a {getattr(annotation, '__name__', annotation)} setting and cannot be searched "
            "(Optuna samples single values); set it under trial: or in baselines"
        )
    allowed = {
        "bool": ("categorical",),
        "str": ("categorical",),
        "int": ("int", "categorical"),
        "float": ("float", "int", "categorical"),
    }[kind]
    if spec.type not in allowed:
        return f"{path} takes {kind} values: use type {' or '.join(allowed)}, got {spec.type!r}"
    return None


def _override_problems(trial: TrialConfig, values: dict[str, Any], unchecked: Unchecked = frozenset()) -> list[Item]:
    """What the trial config says of itself with ``values`` set: ``(dotted key, message)``.

    ``unchecked``: the trial's own bad values; its checks that read them are skipped, so a
    problem of the fixed trial is not blamed on each value put into it.
    """
    try:
        data = _overridden(trial, values)
    except Problems as err:
        return err.items
    return validate_partial(TrialConfig, data, unchecked)[1]


def _overridden(trial: TrialConfig, values: dict[str, Any]) -> dict[str, Any]:
    """``trial`` as a mapping with each dotted path in ``values`` set; Problems for an unknown path."""
    data = trial.model_dump()
    for key, value in values.items():
        problem = _resolve_problem(str(key))
        if problem:
            raise Problems([(str(key), problem)])
        *sections, leaf = str(key).split(".")
        node = data
        for part in sections:
            node = node[part]
        node[leaf] = value
    return data


def apply_overrides(trial: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    """A validated copy of ``trial`` with each dotted path in ``values`` set.

    Args:
        trial: the fixed trial config (not modified).
        values: dotted path (``optimizer.quantum_weight``, ``seed``) -> value.

    Returns:
        A new TrialConfig.

    Raises:
        ValueError: listing every problem with its key, for an unknown path or a value the
            trial config refuses, e.g.
            ``optimizer.quantum_weight: input should be greater than or equal to 0, got -1``.
    """
    data = _overridden(trial, values)
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        raise Problems(validate_partial(TrialConfig, data)[1] or error_items(err, TrialConfig)) from None


# ------------------------------------------------------------------------------ loading


def _with_derived_num_samples(data: Any) -> Any:
    """``data`` with a comparison study's ``num_samples`` (``len(arms) x len(seeds)``) put in
    where the file leaves it out; anything else unchanged."""
    if not isinstance(data, dict) or "num_samples" in data or not data.get("arms"):
        return data
    arms, seeds = data["arms"], data.get("seeds")
    sized = isinstance(arms, dict) and isinstance(seeds, list)
    # With arms or seeds unusable (their own problem is reported), 1 stands in.
    return {**data, "num_samples": max(1, len(arms) * len(seeds)) if sized else 1}


def is_study_file(data: dict[str, Any]) -> bool:
    """True if a YAML mapping is a study (it has a study-only key such as ``trial:`` or
    ``space:``), False if it is a trial config (``qstudy train FILE``)."""
    return bool(set(data) & (set(StudyConfig.model_fields) - set(TrialConfig.model_fields)))


# Stand-ins for a required value that failed its own validation, so the rest still gets
# its cross checks (the value is then marked unchecked).
_PLACEHOLDERS = {"name": "study", "num_samples": 1, "trial": {}}


def _validate(data: dict[str, Any], source: str | Path) -> tuple[StudyConfig | None, TrialConfig | None, list[str]]:
    """``(study, its trial, [])``, or ``(None, the trial as far as it validated or None, every problem)``.

    Every problem: each part's own, and the cross checks of whatever validated (see
    ``validate_partial``), so one run lists them all.
    """
    try:
        study = StudyConfig.model_validate(data)
        return study, study.trial, []
    except ValidationError as err:
        partial, problems, bad = validate_partial(StudyConfig, data, placeholders=_PLACEHOLDERS)
        problems = problems or error_items(err, StudyConfig)
    trial = partial.trial if partial is not None and ("trial",) not in bad else None
    return None, trial, [format_line(source, key, message) for key, message in problems]


def load_study_config(path: str | Path, check_paths: PathCheck | None = None) -> StudyConfig:
    """Loads and validates a study file; raises one ConfigError listing every problem.

    Args:
        path: the study YAML (``search_spaces/*.yaml``).
        check_paths: checks of the fixed trial's data files and model checkpoint on this
            machine (``qstudy.train.check_paths``), reported with the file's other
            problems; None to validate a cluster study on a laptop.

    Returns:
        The validated StudyConfig; ``name`` defaults to the file's stem.
    """
    data = load_yaml(path)
    data.setdefault("name", Path(path).stem)
    # Derived here too, not only in the model: when arms fail their own validation and are
    # left out, the rest of the file still has its num_samples and gets its cross checks.
    data = _with_derived_num_samples(data)
    study, trial, lines = _validate(data, path)
    if check_paths and trial is not None:
        lines += check_paths(trial, str(path), "trial.")
    if lines:
        raise ConfigError(lines)
    return study

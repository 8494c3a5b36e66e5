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
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from qstudy.config._arms import CONTROL_ARM
from qstudy.config._claims import ClaimConfig, PaperGap
from qstudy.config._confirm import ConfirmConfig
from qstudy.config._errors import ConfigError
from qstudy.config._loader import ConfigModel, Item, Unchecked, error_items, format_line, load_yaml, validate_partial
from qstudy.config._overrides import apply_overrides
from qstudy.config._sections import ObjectiveConfig, SamplerConfig, SchedulerConfig, TrackingConfig
from qstudy.config._space import ParamSpec
from qstudy.config._study_checks import study_problems
from qstudy.config._trial import PathCheck, TrialConfig

__all__ = ["StudyConfig", "is_study_file", "load_study_config"]


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

    def overridden_keys(self) -> set[str]:
        """Every dotted trial key a trial of the study may set apart from ``trial``: the
        searched keys and those of the baselines and arms (a confirm phase re-runs searched
        configurations)."""
        keys = set(self.space)
        for overrides in [*self.baselines, *self.arms.values()]:
            keys.update(overrides)
        return keys

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
        return study_problems(self, unchecked)


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

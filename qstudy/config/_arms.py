"""A comparison study's arms: named sets of dotted trial overrides, one of them the control,
each run once per seed of ``seeds`` so every arm is paired with the control seed for seed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qstudy.config._loader import Item, Unchecked, touches
from qstudy.config._overrides import apply_overrides, refused_overrides, resolve_problem

if TYPE_CHECKING:
    from qstudy.config._study import StudyConfig

__all__ = ["CONTROL_ARM", "comparison_problems", "seed_problems"]

# The arm every comparison study must name: the others are compared with it, seed for seed.
CONTROL_ARM = "control"


def comparison_problems(study: StudyConfig, unchecked: Unchecked, trial_ok: bool, trial_bad: Unchecked) -> list[Item]:
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
        problems += seed_problems(study.seeds, "each arm runs once per seed")
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


def seed_problems(seeds: list[int], why_distinct: str) -> list[Item]:
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
        problem = resolve_problem(str(key))
        if problem:
            problems.append((f"{where}.{key}", problem))
    if trial_ok and not problems:
        problems += refused_overrides(study.trial, where, overrides, trial_bad)
    return problems

"""A search study's confirm phase: its top_k configurations and the control run again on
fresh seeds, so the best is named by its mean over seeds it was not chosen on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from qstudy.config._arms import seed_problems
from qstudy.config._loader import ConfigModel, Item, Unchecked, touches
from qstudy.config._space import ParamSpec

if TYPE_CHECKING:
    from qstudy.config._study import StudyConfig

__all__ = ["ConfirmConfig", "confirm_problems"]


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
        return problems + seed_problems(self.seeds, "each configuration runs once per seed")


def confirm_problems(study: StudyConfig, comparison: bool, unchecked: Unchecked) -> list[Item]:
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

"""The paper's claims a comparison study checks, and where the paper leaves the set-up open.

A claim names what is measured (``measure``), on which arm against which control, and
the paper's numbers; ``qstudy report`` puts the measured value with its 95% interval
beside it and gives a verdict (holds / not supported / contradicted)::

    claims:
      - text: 90% accuracy in 4.6 epochs with λ = 0.5, 7.4 with Adam
        measure: epochs_to_target
        metric: eval_accuracy
        target: 0.9
        arm: lambda_0.5
        paper: 4.6
        paper_control: 7.4
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qstudy.config._loader import ConfigModel, Item, Unchecked, list_indices, touches

__all__ = ["CLAIM_MEASURES", "ClaimConfig", "PaperGap", "claim_problems"]

# What a claim measures. final: the metric's last value; *_to_target: the first evaluation
# at which the metric reaches target (a lower bound where a seed never reaches it);
# time_per_step: the step's wall time, paired in one process (`qstudy report`);
# time_to_target: steps_to_target x time_per_step; best_arm: ``arm`` has the best final
# metric of ``among``.
CLAIM_MEASURES = ("final", "steps_to_target", "epochs_to_target", "time_per_step", "time_to_target", "best_arm")
_TARGETED = ("steps_to_target", "epochs_to_target", "time_to_target")
_NO_METRIC = ("time_per_step",)


class ClaimConfig(ConfigModel):
    """One claim of the paper, checked by the report against the study's arms."""

    text: str = Field(min_length=1, description="the claim in the paper's words, e.g. '+35% time per epoch'")
    measure: Literal[CLAIM_MEASURES] = Field(
        description="final, steps_to_target, epochs_to_target, time_per_step, time_to_target or best_arm"
    )
    metric: str | None = Field(
        None, description="the trial metric (eval_accuracy, mean_train_loss, ...); not used by time_per_step"
    )
    target: float | None = Field(None, description="*_to_target: the value the metric must reach")
    arm: str = Field(description="the arm the claim is about")
    control: str = Field("control", description="the arm it is compared with (default control)")
    among: list[str] | None = Field(None, description="best_arm: the arms compared, ``arm`` among them")
    paper: float | None = Field(None, description="the paper's value for ``arm``")
    paper_control: float | None = Field(None, description="the paper's value for the control")
    paper_change: float | None = Field(
        None, description="the paper's relative change of arm against control, e.g. 0.35 for +35%, -0.16 for -16%"
    )

    def claimed_change(self) -> float | None:
        """The relative change the paper claims (arm / control - 1), None for best_arm."""
        if self.paper_change is not None:
            return self.paper_change
        if self.paper is not None and self.paper_control not in (None, 0):
            return self.paper / self.paper_control - 1
        return None

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        problems: list[Item] = []
        if touches(unchecked, "measure"):
            return problems
        targeted = self.measure in _TARGETED
        if not touches(unchecked, "target"):
            if targeted and self.target is None:
                problems.append(("target", f"measure {self.measure} needs the value the metric must reach, e.g. 0.9"))
            if not targeted and self.target is not None:
                problems.append(("target", f"only used by {', '.join(_TARGETED)}, got measure {self.measure!r}"))
        if not touches(unchecked, "metric"):
            if self.measure in _NO_METRIC and self.metric is not None:
                problems.append(
                    ("metric", f"measure {self.measure} times steps and reads no metric, got {self.metric!r}")
                )
            if self.measure not in _NO_METRIC and self.metric is None:
                problems.append(("metric", f"measure {self.measure} needs a trial metric, e.g. eval_accuracy"))
        if not touches(unchecked, "among"):
            if self.measure == "best_arm" and len(self.among or []) < 2:
                problems.append(("among", f"measure best_arm needs at least two arms to compare, got {self.among!r}"))
            if self.measure != "best_arm" and self.among is not None:
                problems.append(("among", f"only used by measure best_arm, got measure {self.measure!r}"))
        if self.measure != "best_arm" and not touches(unchecked, "paper", "paper_control", "paper_change"):
            if self.claimed_change() is None:
                problems.append(
                    (
                        "paper",
                        "a claim needs the paper's numbers: paper and paper_control, or "
                        "paper_change (the relative change, e.g. -0.16), got none",
                    )
                )
        return problems


class PaperGap(ConfigModel):
    """A point where the paper leaves the set-up undefined, and what this study chose."""

    topic: str = Field(min_length=1, description="what is undefined, e.g. 'the synthetic task'")
    paper: str = Field(min_length=1, description="what the paper says (or that it says nothing)")
    qstudy: str = Field(min_length=1, description="what this study does instead")


def claim_problems(
    claims: list[ClaimConfig], arms: dict, metrics: dict[str, str], train_examples: int | None, unchecked: Unchecked
) -> list[Item]:
    """Problems between ``claims`` and the study: unknown arms and metrics, epochs without an epoch length.

    Args:
        metrics: metric name -> natural direction (``OBJECTIVE_METRICS``).
        train_examples: ``trial.data.train_examples`` (None: the epoch length is unknown).
    """
    if claims and not arms and not touches(unchecked, "arms"):
        return [
            (
                "claims",
                "claims compare arms: only a comparison study (arms: and seeds:) can carry them, "
                f"got {len(claims)} claim(s) and no arms",
            )
        ]
    problems: list[Item] = []
    if touches(unchecked, "arms"):
        return problems
    known = ", ".join(arms)
    for i, claim in zip(list_indices(unchecked, "claims", len(claims)), claims):
        where = f"claims.{i}"
        for key in ("arm", "control"):
            name = getattr(claim, key)
            if name not in arms:
                problems.append((f"{where}.{key}", f"must name an arm ({known}), got {name!r}"))
        for name in claim.among or []:
            if name not in arms:
                problems.append((f"{where}.among", f"must name arms ({known}), got {name!r}"))
        if claim.among and claim.arm not in claim.among:
            problems.append((f"{where}.among", f"must include the claim's arm {claim.arm!r}, got {claim.among!r}"))
        if claim.arm == claim.control and claim.measure != "best_arm":
            problems.append(
                (f"{where}.control", f"must differ from arm (an arm compared with itself), got {claim.control!r}")
            )
        if claim.metric is not None and claim.metric not in metrics:
            problems.append((f"{where}.metric", f"must be one of {', '.join(metrics)}, got {claim.metric!r}"))
        if claim.measure == "epochs_to_target" and train_examples is None:
            problems.append(
                (
                    f"{where}.measure",
                    "epochs_to_target needs trial.data.train_examples (the epoch length), "
                    "got none: use steps_to_target",
                )
            )
    return problems

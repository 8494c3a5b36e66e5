"""From a study's record to its answer: arms against the control seed for seed, targets,
cost, settings that changed nothing, and the paper's claims with verdicts.

Every number is computed here from the ``StudyRecord`` (MLflow's curves, Optuna's states)
and the paired timing the report logged on the parent run; ``report.json`` is this
module's output as it is.
"""

from __future__ import annotations

import math
from typing import Any

from qstudy.config import TrialStatus
from qstudy.report._read import StudyRecord, TrialRecord
from qstudy.report._stats import Interval, first_reaching, mean_interval, paired_difference, verdict

__all__ = ["OUTCOME_METRICS", "analyse", "identical_curves"]

# Curves that are outcomes of training (the perturbation diagnostics differ by construction
# between λ > 0 and λ = 0, so they are not compared by the no-effect check).
OUTCOME_METRICS = ("train_loss", "eval_loss", "eval_accuracy", "mean_train_loss", "gsm8k_accuracy")
IDENTICAL_TOLERANCE = 1e-6


def _direction(metric: str) -> str:
    from qstudy.config import OBJECTIVE_METRICS

    return OBJECTIVE_METRICS.get(metric, "min")


def _final(trial: TrialRecord, metric: str) -> float | None:
    curve = trial.curves.get(metric)
    return curve[-1][1] if curve else None


def _completed(trials: list[TrialRecord]) -> dict[int, TrialRecord]:
    """Seed -> the completed trial of that seed (the first, should a seed repeat)."""
    by_seed: dict[int, TrialRecord] = {}
    for t in trials:
        if t.status == TrialStatus.COMPLETED and t.seed is not None:
            by_seed.setdefault(t.seed, t)
    return by_seed


def identical_curves(a: TrialRecord, b: TrialRecord, tolerance: float = IDENTICAL_TOLERANCE) -> bool:
    """True when every outcome curve both trials logged has the same steps and values
    within ``tolerance`` (absolute, or relative to the value's size where larger)."""
    common = [m for m in OUTCOME_METRICS if m in a.curves and m in b.curves]
    if not common:
        return False
    for m in common:
        ca, cb = a.curves[m], b.curves[m]
        if [s for s, _ in ca] != [s for s, _ in cb]:
            return False
        for (_, va), (_, vb) in zip(ca, cb):
            if not math.isclose(va, vb, rel_tol=tolerance, abs_tol=tolerance):
                return False
    return True


def _steps_per_epoch(trial: TrialRecord) -> float | None:
    examples, batch = trial.params.get("data.train_examples"), trial.params.get("train.global_batch_size")
    if examples in (None, "None") or batch in (None, "None"):
        return None
    return int(examples) / int(batch)


def _interval(values: list[float]) -> dict[str, Any] | None:
    return mean_interval(values).as_dict() if values else None


# --------------------------------------------------------------------------- arms


def _arm_order(study, arms: dict[str, list[TrialRecord]]) -> list[str]:
    order = ["control", *(a for a in study.arms if a != "control")] if study.arms else ["control"]
    return [a for a in order if a in arms] + sorted(a for a in arms if a not in order)


def _to_target(trials: dict[int, TrialRecord], metric: str, target: float) -> dict[int, dict[str, Any]]:
    """Seed -> ``{"step": first step reaching target or the last step evaluated, "reached": bool}``."""
    mode = _direction(metric)
    out = {}
    for seed, t in trials.items():
        curve = t.curves.get(metric, [])
        if not curve:
            continue
        step = first_reaching(curve, target, mode)
        out[seed] = {"step": step if step is not None else curve[-1][0], "reached": step is not None}
    return out


def _target_summary(per_seed: dict[int, dict[str, Any]], steps_per_epoch: float | None) -> dict[str, Any]:
    steps = [v["step"] for v in per_seed.values()]
    reached = sum(v["reached"] for v in per_seed.values())
    summary: dict[str, Any] = {
        "n": len(steps),
        "reached": reached,
        "per_seed": {str(s): v for s, v in per_seed.items()},
    }
    if not steps:
        return summary
    summary["steps"] = mean_interval(steps).as_dict()
    if steps_per_epoch:
        summary["epochs"] = mean_interval([s / steps_per_epoch for s in steps]).as_dict()
    # Seeds that never reached the target count at their last evaluated step: the mean is
    # then a lower bound, and says so ("≥ 15, 3 of 5 reached"), rather than dropping them.
    summary["censored"] = reached < len(steps)
    return summary


def _targets(study) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    for claim in study.claims:
        if claim.target is not None and (claim.metric, claim.target) not in seen:
            seen.append((claim.metric, claim.target))
    return seen


def _arm_summaries(study, record: StudyRecord, phase: str, timing: dict[str, list[float]]) -> dict[str, Any]:
    arms = record.arm_trials(phase)
    if "control" not in arms:
        return {}
    order = _arm_order(study, arms)
    metric = record.metric
    control = _completed(arms["control"])
    out: dict[str, Any] = {}
    completed_by_arm = {name: _completed(arms[name]) for name in order}
    for i, name in enumerate(order):
        trials = completed_by_arm[name]
        finals = {seed: _final(t, metric) for seed, t in trials.items() if _final(t, metric) is not None}
        summary: dict[str, Any] = {
            "trials": len(arms[name]),
            "n": len(finals),
            "seeds": sorted(finals),
            "not_completed": [
                {"trial_id": t.trial_id, "seed": t.seed, "status": t.status}
                for t in arms[name]
                if t.status != TrialStatus.COMPLETED
            ],
            "final": _interval(list(finals.values())),
            "final_per_seed": {str(s): v for s, v in sorted(finals.items())},
        }
        if name != "control":
            paired = sorted(set(finals) & {s for s, t in control.items() if _final(t, metric) is not None})
            summary["paired_seeds"] = paired
            summary["difference"] = (
                paired_difference([finals[s] for s in paired], [_final(control[s], metric) for s in paired]).as_dict()
                if paired
                else None
            )
        any_trial = next(iter(trials.values()), None)
        steps_per_epoch = _steps_per_epoch(any_trial) if any_trial else None
        summary["steps_per_epoch"] = steps_per_epoch
        summary["to_target"] = [
            {"metric": m, "target": target, **_target_summary(_to_target(trials, m, target), steps_per_epoch)}
            for m, target in _targets(study)
        ]
        if name in timing and "control" in timing and name != "control":
            summary["time_per_step_ratio"] = mean_interval(
                [a / c for a, c in zip(timing[name], timing["control"])]
            ).as_dict()
        if name in timing:
            summary["time_per_step_s"] = mean_interval(timing[name]).as_dict()
        summary["identical_to"], summary["identical_reason"] = _identical(name, order[:i], completed_by_arm, arms)
        summary["diagnostics"] = _diagnostics(trials)
        out[name] = summary
    return out


def _identical(
    name: str, earlier: list[str], completed: dict[str, dict[int, TrialRecord]], arms: dict[str, list[TrialRecord]]
) -> tuple[str | None, str | None]:
    """The first earlier arm this arm equals seed for seed (every paired seed), and why."""
    mine = completed[name]
    for other in earlier:
        theirs = completed[other]
        paired = sorted(set(mine) & set(theirs))
        if paired and all(identical_curves(mine[s], theirs[s]) for s in paired):
            return other, _likely_reason(mine, theirs, paired)
    return None, None


def _likely_reason(mine: dict[int, TrialRecord], theirs: dict[int, TrialRecord], paired: list[int]) -> str:
    trial = mine[paired[0]]
    differing = sorted(
        k for k, v in trial.values.items() if k != "seed" and str(v) != str(theirs[paired[0]].values.get(k))
    )
    nonzero = [v for s in paired for _, v in mine[s].curves.get("nonzero_perturbation_coordinates", [])]
    perturbed = [v for s in paired for _, v in mine[s].curves.get("perturbed_coordinates", [])]
    lam = float(trial.params.get("optimizer.quantum_weight", "nan"))
    if nonzero and max(nonzero) == 0 and lam > 0:
        scope = trial.params.get("optimizer.scope")
        where = (
            (
                " (scope leading: the model's first optimizer.n_qubits coordinates, e.g. the embedding row of a "
                "token that never occurs)"
            )
            if scope == "leading"
            else ""
        )
        count = f"{int(max(perturbed))} perturbed coordinates" if perturbed else "the perturbed coordinates"
        return (
            f"{count} had a zero gradient at every reported step (nonzero_perturbation_coordinates = 0), so "
            f"Q = response·g was 0{where}"
        )
    return f"its settings ({', '.join(differing) or 'none'}) left every logged curve unchanged"


def _diagnostics(trials: dict[int, TrialRecord]) -> dict[str, Any]:
    """Mean over seeds of each perturbation diagnostic's mean over the reported steps."""
    out = {}
    for key in ("perturbation_to_adam_ratio", "perturbed_coordinates", "nonzero_perturbation_coordinates"):
        per_seed = [sum(v for _, v in t.curves[key]) / len(t.curves[key]) for t in trials.values() if t.curves.get(key)]
        per_seed = [v for v in per_seed if math.isfinite(v)]
        if per_seed:
            out[key] = sum(per_seed) / len(per_seed)
    return out


# --------------------------------------------------------------------------- claims


def _claim(
    claim, arms: dict[str, Any], completed: dict[str, dict[int, TrialRecord]], timing: dict[str, list[float]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "text": claim.text,
        "measure": claim.measure,
        "arm": claim.arm,
        "control": claim.control,
        "metric": claim.metric,
        "target": claim.target,
        "paper": claim.paper,
        "paper_control": claim.paper_control,
        "paper_change": claim.claimed_change(),
    }
    if claim.arm not in completed or claim.control not in completed:
        return {**out, "verdict": "not measured", "why": "the arm or its control has no completed trial"}
    arm, control = completed[claim.arm], completed[claim.control]
    if claim.measure == "best_arm":
        return {**out, **_best_arm(claim, completed)}
    sign = 1 if (claim.claimed_change() or 0) > 0 else -1
    if claim.measure == "final":
        seeds = sorted(
            s
            for s in set(arm) & set(control)
            if _final(arm[s], claim.metric) is not None and _final(control[s], claim.metric) is not None
        )
        if not seeds:
            return {**out, "verdict": "not measured", "why": "no seed where both completed"}
        a = [_final(arm[s], claim.metric) for s in seeds]
        c = [_final(control[s], claim.metric) for s in seeds]
        diff = paired_difference(a, c)
        claimed_diff = (
            (claim.paper - claim.paper_control) if claim.paper is not None and claim.paper_control is not None else None
        )
        sign = 1 if (claimed_diff if claimed_diff is not None else claim.claimed_change()) > 0 else -1
        return {
            **out,
            "seeds": seeds,
            "arm_value": mean_interval(a).as_dict(),
            "control_value": mean_interval(c).as_dict(),
            "difference": diff.as_dict(),
            "claimed_difference": claimed_diff,
            "verdict": verdict(diff, sign),
            **_size_note(diff, claimed_diff),
        }
    if claim.measure == "time_per_step":
        if claim.arm not in timing or claim.control not in timing:
            return {
                **out,
                "verdict": "not measured",
                "why": "no paired timing of these arms (qstudy report --timing-rounds 0?)",
            }
        change = mean_interval([x / y - 1 for x, y in zip(timing[claim.arm], timing[claim.control])])
        return {
            **out,
            "change": change.as_dict(),
            "rounds": change.n,
            "verdict": verdict(change, sign),
            **_size_note(change, claim.claimed_change()),
        }
    # steps / epochs / time to target: per paired seed, censored where a seed never reached it
    a_t, c_t = _to_target(arm, claim.metric, claim.target), _to_target(control, claim.metric, claim.target)
    seeds = sorted(set(a_t) & set(c_t))
    if not seeds:
        return {**out, "verdict": "not measured", "why": "no seed where both completed"}
    spe = _steps_per_epoch(next(iter(arm.values())))
    scale = 1.0 / spe if claim.measure == "epochs_to_target" and spe else 1.0
    arm_censored = [s for s in seeds if not a_t[s]["reached"]]
    control_censored = [s for s in seeds if not c_t[s]["reached"]]
    res: dict[str, Any] = {
        "seeds": seeds,
        "arm_reached": len(seeds) - len(arm_censored),
        "control_reached": len(seeds) - len(control_censored),
    }
    if claim.measure == "time_to_target":
        if claim.arm not in timing or claim.control not in timing:
            return {**out, **res, "verdict": "not measured", "why": "no paired timing of these arms"}
        t_arm = sum(timing[claim.arm]) / len(timing[claim.arm])
        t_control = sum(timing[claim.control]) / len(timing[claim.control])
        measured = mean_interval([a_t[s]["step"] * t_arm / (c_t[s]["step"] * t_control) - 1 for s in seeds])
        res["change"] = measured.as_dict()
        claimed = claim.claimed_change()
    else:
        a = [a_t[s]["step"] * scale for s in seeds]
        c = [c_t[s]["step"] * scale for s in seeds]
        measured = paired_difference(a, c)
        res.update(
            arm_value=mean_interval(a).as_dict(),
            control_value=mean_interval(c).as_dict(),
            difference=measured.as_dict(),
        )
        claimed = (
            (claim.paper - claim.paper_control) if claim.paper is not None and claim.paper_control is not None else None
        )
        if claimed is not None:
            sign = 1 if claimed > 0 else -1
        res["claimed_difference"] = claimed
    res["verdict"] = _censored_verdict(measured, sign, bool(arm_censored), bool(control_censored))
    if arm_censored or control_censored:
        res["why"] = (
            f"censored: the arm never reached {claim.target} in {len(arm_censored)} of {len(seeds)} seeds, "
            f"the control in {len(control_censored)}; those seeds count at their last evaluation (a lower "
            "bound), so only a verdict the bound cannot overturn is given"
        )
    else:
        res.update(_size_note(measured, claimed))
    return {**out, **res}


def _censored_verdict(measured: Interval, sign: int, arm_censored: bool, control_censored: bool) -> str:
    """A verdict on arm - control where censored values are lower bounds of the truth.

    The arm's bounds make the true difference larger than measured, the control's smaller:
    a verdict stands only where that shift cannot reverse it."""
    plain = verdict(measured, sign)
    if not arm_censored and not control_censored:
        return plain
    side = measured.excludes_zero()
    if arm_censored and not control_censored and side > 0:
        return "contradicted" if sign < 0 else "holds"
    if control_censored and not arm_censored and side < 0:
        return "holds" if sign < 0 else "contradicted"
    return "not supported"


def _size_note(measured: Interval, claimed: float | None) -> dict[str, Any]:
    if claimed is None or measured.half_width is None:
        return {}
    inside = measured.low <= claimed <= measured.high
    out: dict[str, Any] = {"claimed_size_within_interval": inside}
    if not inside:  # which side of the interval the paper's size is on
        out["claimed_size_is"] = "larger" if abs(claimed) > max(abs(measured.low), abs(measured.high)) else "smaller"
    return out


def _best_arm(claim, completed: dict[str, dict[int, TrialRecord]]) -> dict[str, Any]:
    metric, better = claim.metric, 1 if _direction(claim.metric) == "max" else -1
    means = {}
    for name in claim.among:
        finals = [_final(t, metric) for t in completed.get(name, {}).values() if _final(t, metric) is not None]
        if finals:
            means[name] = mean_interval(finals).as_dict()
    if claim.arm not in means:
        return {"verdict": "not measured", "why": f"{claim.arm} has no completed trial"}
    top = max(better * m["mean"] for m in means.values())
    tied = [n for n, m in means.items() if math.isclose(better * m["mean"], top, rel_tol=1e-12, abs_tol=1e-12)]
    best = tied[0] if len(tied) == 1 else "tie: " + ", ".join(tied)
    versus = {}
    mine = completed[claim.arm]
    for name in claim.among:
        if name == claim.arm or name not in means:
            continue
        seeds = sorted(
            s
            for s in set(mine) & set(completed[name])
            if _final(mine[s], metric) is not None and _final(completed[name][s], metric) is not None
        )
        if seeds:
            versus[name] = paired_difference(
                [_final(mine[s], metric) for s in seeds], [_final(completed[name][s], metric) for s in seeds]
            )
    sides = [d.excludes_zero() * better for d in versus.values()]
    if any(side < 0 for side in sides):
        result = "contradicted"
    elif best == claim.arm and sides and all(side > 0 for side in sides):
        result = "holds"
    else:
        result = "not supported"
    return {
        "means": means,
        "best_by_mean": best,
        "versus": {k: v.as_dict() for k, v in versus.items()},
        "verdict": result,
    }


# --------------------------------------------------------------------------- search


def _search(study, record: StudyRecord) -> dict[str, Any]:
    trials = [t for t in record.trials if t.phase == "search"]
    if not trials:
        return {}
    metric, mode = record.metric, record.mode
    rows = []
    for t in trials:
        rows.append(
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "values": t.values,
                "baseline": t.baseline,
                "objective": _final(t, metric) if t.status == TrialStatus.COMPLETED else None,
            }
        )
    done = [r for r in rows if r["objective"] is not None]
    ranked = sorted(done, key=lambda r: r["objective"], reverse=mode == "max")
    return {
        "trials": rows,
        "ranked": [r["trial_id"] for r in ranked],
        "searched": list(study.space),
        "best_single_trial": ranked[0]["trial_id"] if ranked else None,
    }


# --------------------------------------------------------------------------- all


def analyse(study, record: StudyRecord, timing: dict[str, list[float]]) -> dict[str, Any]:
    """The report's numbers (``report.json`` without its header and figure list)."""
    phases = sorted({t.phase for t in record.trials if t.arm is not None})
    comparisons = {phase: _arm_summaries(study, record, phase, timing) for phase in phases}
    completed = {name: _completed(trials) for name, trials in record.arm_trials("comparison").items()}
    claims = [_claim(c, comparisons.get("comparison", {}), completed, timing) for c in study.claims]
    return {
        "objective": {"metric": record.metric, "mode": record.mode},
        "trials": [
            {
                "trial_id": t.trial_id,
                "phase": t.phase,
                "arm": t.arm,
                "seed": t.seed,
                "status": t.status,
                "objective": _final(t, record.metric),
                "run_id": t.run_id,
            }
            for t in record.trials
        ],
        "not_completed": [
            {"trial_id": t.trial_id, "phase": t.phase, "arm": t.arm, "seed": t.seed, "status": t.status}
            for t in record.trials
            if t.status != TrialStatus.COMPLETED
        ],
        "arms": comparisons,
        "claims": claims,
        "search": _search(study, record),
        "paper_gaps": [gap.model_dump() for gap in study.paper_gaps],
    }

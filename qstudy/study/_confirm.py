"""The confirm phase of a search study: its best configurations run again on fresh seeds.

The best of N noisy trials is partly the luckiest one (the winner's curse): its objective
is biased toward a good draw of initialisation and batch order. A search study with
``confirm: {top_k, seeds}`` therefore runs, once its search is finished, the ``top_k``
best distinct configurations (arms ``top_1`` ... ``top_k``) and the control
(``baselines[0]``, arm ``control``) once on each fresh seed, and names the confirmed best
by its mean over those seeds, next to the control's mean over the same seeds.

Pure functions here; the driver stores the selection once (Optuna study user attr
``qstudy.confirm``) so a resumed driver runs the same arms, never a new pick.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from qstudy.config import CONTROL_ARM, TrialStatus
from qstudy.tracking import trial_number

__all__ = ["confirm_trials", "rank_confirmed", "select_confirm", "top_arms"]


def select_confirm(
    finished: dict[str, dict[str, Any]],
    control: tuple[str, dict[str, Any]],
    top_k: int,
    mode: str,
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The arms of the confirm phase: the search's ``top_k`` best distinct configurations
    and the control.

    Ranked by the objective over the search's completed trials (ties: the earlier trial
    first). Configurations are told apart by their values without ``seed``, which the
    confirm phase replaces: two trials that differ only by their seed are one
    configuration, kept once at its better trial. The control's configuration is never a
    top arm (a trial that repeats it is skipped; the next one is taken).

    Args:
        finished: :meth:`StudySearcher.finished_trials`: trial id -> ``values``,
            ``status``, ``value`` (and ``phase``: confirm trials are ignored).
        control: ``(trial id, values)`` of the control as the search ran it.
        top_k: how many configurations to pick.
        mode: ``min`` or ``max``, the objective's direction.

    Returns:
        ``(selection, note)``: ``selection`` maps ``top_1`` ... ``top_n`` (best first) to
        ``{"from_trial", "values", "value"}`` and ``control`` to ``{"from_trial",
        "values"}``; ``note`` says why ``n < top_k`` (None when all ``top_k`` were found).
    """
    control_id, control_values = control
    taken = {_configuration(control_values)}
    search = {tid: t for tid, t in finished.items() if t.get("phase") is None}
    completed = [
        (tid, t) for tid, t in search.items() if t["status"] == TrialStatus.COMPLETED and _finite(t.get("value"))
    ]
    sign = 1 if mode == "min" else -1
    completed.sort(key=lambda item: (sign * item[1]["value"], trial_number(item[0])))
    top: list[tuple[str, dict[str, Any]]] = []
    repeats = 0
    for tid, trial in completed:
        if len(top) == top_k:
            break
        key = _configuration(trial["values"])
        if key in taken:
            repeats += tid != control_id
            continue
        taken.add(key)
        top.append((tid, trial))
    selection = {
        f"top_{rank}": {"from_trial": tid, "values": dict(trial["values"]), "value": trial["value"]}
        for rank, (tid, trial) in enumerate(top, 1)
    }
    selection[CONTROL_ARM] = {"from_trial": control_id, "values": dict(control_values)}
    note = None
    if len(top) < top_k:
        unfinished = len(search) - len(completed)
        why = [f"{len(completed)} completed"]
        if unfinished:
            why.append(f"{unfinished} failed, diverged or pruned")
        if repeats:
            why.append(f"{repeats} repeated the control's or a better trial's configuration")
        picked = ", ".join(f"{arm} = {entry['from_trial']}" for arm, entry in selection.items() if arm != CONTROL_ARM)
        note = (
            f"confirm: top_k is {top_k}, but the search has only {len(top)} distinct configuration(s) besides "
            f"the control to confirm ({'; '.join(why)} of {len(search)} search trials): "
            + (f"confirming {picked}" if top else "nothing to confirm, the confirm phase runs no trial")
        )
    return selection, note


def top_arms(selection: dict[str, dict[str, Any]]) -> list[str]:
    """The top arms of a selection, best first: ``top_1``, ``top_2``, ..."""
    return sorted((arm for arm in selection if arm != CONTROL_ARM), key=lambda arm: int(arm.split("_")[1]))


def confirm_trials(selection: dict[str, dict[str, Any]], seeds: list[int]) -> list[tuple[str, int, dict[str, Any]]]:
    """Every ``(arm, seed, values)`` of the confirm phase, in the order they run.

    Seeds-major, the control first within each seed (as a comparison study runs): a phase
    stopped part-way holds whole seeds, each with its control. Each trial's values are the
    arm's with ``seed`` set to the confirm seed. No top arm: no trial (the control alone
    would be compared with nothing).
    """
    arms = top_arms(selection)
    if not arms:
        return []
    return [(arm, seed, {**selection[arm]["values"], "seed": seed}) for seed in seeds for arm in [CONTROL_ARM, *arms]]


def rank_confirmed(
    selection: dict[str, dict[str, Any]], trials: list[dict[str, Any]], mode: str
) -> list[dict[str, Any]]:
    """The top arms ranked by their mean objective over the confirm seeds, best first.

    An arm's mean and the control's are taken over the same seeds: those on which both
    completed (paired by seed, so the difference is the configuration's, not a seed's).
    Plain means; intervals are the report's. Ties: the better-ranked search pick first.

    Args:
        selection: :func:`select_confirm`'s selection.
        trials: the confirm trials, each ``{"arm", "seed", "status", "value"}``.
        mode: ``min`` or ``max``.

    Returns:
        One ``{"arm", "from_trial", "values", "mean", "control_mean", "seeds"}`` per top arm
        with at least one seed paired with the control, best first (empty: none).
    """
    done: dict[str, dict[int, float]] = {}
    for trial in trials:
        if trial.get("status") == TrialStatus.COMPLETED and _finite(trial.get("value")):
            done.setdefault(trial["arm"], {})[int(trial["seed"])] = float(trial["value"])
    control = done.get(CONTROL_ARM, {})
    ranked = []
    for arm in top_arms(selection):
        seeds = sorted(set(done.get(arm, {})) & set(control))
        if seeds:
            ranked.append(
                {
                    "arm": arm,
                    "from_trial": selection[arm]["from_trial"],
                    "values": selection[arm]["values"],
                    "mean": statistics.fmean(done[arm][s] for s in seeds),
                    "control_mean": statistics.fmean(control[s] for s in seeds),
                    "seeds": seeds,
                }
            )
    sign = 1 if mode == "min" else -1
    return sorted(ranked, key=lambda r: sign * r["mean"])  # stable: ties keep the search's order


def _configuration(values: dict[str, Any]) -> str:
    """A configuration's identity: its values without the seed, as sorted JSON."""
    return json.dumps({k: v for k, v in values.items() if k != "seed"}, sort_keys=True, default=str)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

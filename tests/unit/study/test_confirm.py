"""The confirm phase of a search study: which configurations it re-runs (the search's
top_k distinct ones, never the control), in which order, how its trials are numbered and
marked in Optuna, and which arm the summary names best."""

import json

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler

from qstudy.config import StudyConfig
from qstudy.study._confirm import confirm_trials, rank_confirmed, select_confirm
from qstudy.study._driver import _columns, _scheduler, _summary
from qstudy.study._searcher import ARM_KEY, PHASE_KEY, TRIAL_ID_KEY, StudySearcher
from qstudy.study._space import optuna_space
from qstudy.tracking import StudyTracker

CONTROL = {"quantum.enabled": False, "optimizer.quantum_weight": 0.0}


def _trial(lam, value, status="completed", **extra):
    return {"values": {"optimizer.quantum_weight": lam, **extra}, "status": status, "value": value, "phase": None}


# ------------------------------------------------------------------------- selection


def test_the_best_distinct_configurations_are_picked_best_first():
    finished = {
        "trial_0000": {**_trial(0.0, 2.0), "values": CONTROL},
        "trial_0001": _trial(0.3, 1.4),
        "trial_0002": _trial(0.7, 1.2),
        "trial_0003": _trial(0.5, 1.3),
        "trial_0004": _trial(0.9, 0.9, status="diverged"),
        "trial_0005": _trial(0.1, None, status="pruned"),
    }
    selection, note = select_confirm(finished, ("trial_0000", CONTROL), top_k=2, mode="min")
    assert note is None
    assert selection == {
        "top_1": {"from_trial": "trial_0002", "values": {"optimizer.quantum_weight": 0.7}, "value": 1.2},
        "top_2": {"from_trial": "trial_0003", "values": {"optimizer.quantum_weight": 0.5}, "value": 1.3},
        "control": {"from_trial": "trial_0000", "values": CONTROL},
    }
    best, _ = select_confirm(finished, ("trial_0000", CONTROL), top_k=1, mode="max")
    assert best["top_1"]["from_trial"] == "trial_0001"  # an accuracy: the highest; the control is skipped


def test_the_control_is_never_a_top_arm_and_repeats_count_once():
    finished = {
        "trial_0000": {**_trial(0.0, 0.5), "values": CONTROL},  # the control is the search's best
        "trial_0001": {**_trial(0.0, 0.6), "values": dict(CONTROL)},  # a sampled repeat of the control
        "trial_0002": _trial(0.5, 1.0, seed=3),
        "trial_0003": _trial(0.5, 0.9, seed=4),  # the same configuration, on another seed: kept once, here
        "trial_0004": _trial(0.2, 1.1),
        "trial_0005": _trial(0.2, 1.1),  # a tie with trial_0004: the earlier trial ranks first
    }
    selection, note = select_confirm(finished, ("trial_0000", CONTROL), top_k=2, mode="min")
    assert note is None
    assert [(arm, s["from_trial"]) for arm, s in selection.items()] == [
        ("top_1", "trial_0003"),
        ("top_2", "trial_0004"),
        ("control", "trial_0000"),
    ]
    assert selection["top_1"]["values"] == {"optimizer.quantum_weight": 0.5, "seed": 4}  # as it ran


def test_fewer_completed_configurations_than_top_k_confirm_what_is_there_with_a_note():
    finished = {
        "trial_0000": {**_trial(0.0, 2.0), "values": CONTROL},
        "trial_0001": _trial(0.3, 1.4),
        "trial_0002": _trial(0.3, 1.5),
        "trial_0003": _trial(0.7, None, status="failed"),
        "trial_0004": {**_trial(0.7, 0.1), "phase": "confirm"},  # a confirm trial is no candidate
    }
    selection, note = select_confirm(finished, ("trial_0000", CONTROL), top_k=3, mode="min")
    assert list(selection) == ["top_1", "control"]
    assert note == (
        "confirm: top_k is 3, but the search has only 1 distinct configuration(s) besides the control "
        "to confirm (3 completed; 1 failed, diverged or pruned; 1 repeated the control's or a better "
        "trial's configuration of 4 search trials): confirming top_1 = trial_0001"
    )
    only_control = {"trial_0000": {**_trial(0.0, 2.0), "values": CONTROL}, "trial_0001": _trial(0.3, None, "failed")}
    selection, note = select_confirm(only_control, ("trial_0000", CONTROL), top_k=1, mode="min")
    assert list(selection) == ["control"]
    assert note.endswith("nothing to confirm, the confirm phase runs no trial")
    assert confirm_trials(selection, [1, 2]) == []


def test_confirm_trials_run_seeds_major_control_first_with_the_fresh_seed():
    selection = {
        "top_2": {"from_trial": "trial_0003", "values": {"optimizer.quantum_weight": 0.5, "seed": 4}},
        "top_1": {"from_trial": "trial_0002", "values": {"optimizer.quantum_weight": 0.7}},
        "control": {"from_trial": "trial_0000", "values": CONTROL},
    }
    trials = confirm_trials(selection, [101, 102])
    assert [(arm, seed) for arm, seed, _ in trials] == [
        ("control", 101),
        ("top_1", 101),
        ("top_2", 101),
        ("control", 102),
        ("top_1", 102),
        ("top_2", 102),
    ]
    assert trials[2][2] == {"optimizer.quantum_weight": 0.5, "seed": 101}  # the search's seed is replaced
    assert trials[0][2] == {**CONTROL, "seed": 101}


def test_the_confirmed_best_is_the_best_mean_over_the_seeds_paired_with_the_control():
    selection = {
        "top_1": {"from_trial": "trial_0002", "values": {"optimizer.quantum_weight": 0.7}},
        "top_2": {"from_trial": "trial_0003", "values": {"optimizer.quantum_weight": 0.5}},
        "control": {"from_trial": "trial_0000", "values": CONTROL},
    }
    trials = [
        {"arm": "control", "seed": 1, "status": "completed", "value": 2.0},
        {"arm": "top_1", "seed": 1, "status": "completed", "value": 1.6},
        {"arm": "top_2", "seed": 1, "status": "completed", "value": 1.2},
        {"arm": "control", "seed": 2, "status": "completed", "value": 2.2},
        {"arm": "top_1", "seed": 2, "status": "completed", "value": 1.4},
        {"arm": "top_2", "seed": 2, "status": "completed", "value": 1.4},
        {"arm": "control", "seed": 3, "status": "failed", "value": None},  # seed 3 pairs with nothing
        {"arm": "top_1", "seed": 3, "status": "completed", "value": 0.1},
        {"arm": "top_2", "seed": 3, "status": "completed", "value": 5.0},
    ]
    ranked = rank_confirmed(selection, trials, "min")
    assert [(r["arm"], r["from_trial"], r["seeds"]) for r in ranked] == [
        ("top_2", "trial_0003", [1, 2]),
        ("top_1", "trial_0002", [1, 2]),
    ]
    assert ranked[0]["mean"] == pytest.approx(1.3) and ranked[0]["control_mean"] == pytest.approx(2.1)
    assert ranked[1]["mean"] == pytest.approx(1.5)
    assert [r["arm"] for r in rank_confirmed(selection, trials, "max")] == ["top_1", "top_2"]
    tie = [t if t["arm"] != "top_2" else {**t, "value": {1: 1.6, 2: 1.4}.get(t["seed"], 5.0)} for t in trials]
    assert [r["arm"] for r in rank_confirmed(selection, tie, "min")] == ["top_1", "top_2"]  # the search's order
    assert rank_confirmed(selection, [t for t in trials if t["arm"] != "control"], "min") == []


# ------------------------------------------------------------------------- the searcher

SPACE = {
    "optimizer.quantum_weight": optuna.distributions.FloatDistribution(0.0, 1.0),
    "seed": optuna.distributions.IntDistribution(0, 10),
}


@pytest.fixture
def make_searcher(tmp_path):
    def make() -> StudySearcher:
        return StudySearcher(
            study_name="search",
            storage_url=f"sqlite:///{tmp_path / 'optuna.db'}",
            space=SPACE,
            sampler=optuna.samplers.RandomSampler(seed=0),
            metric="eval_loss",
            mode="min",
            num_samples=3,
            baselines=[CONTROL],
        )

    return make


def _complete(searcher, tune_id, value):
    searcher.on_trial_complete(tune_id, {"eval_loss": value, "step": 6, "status": "completed"})


def _settings(config):
    return {k: v for k, v in config.items() if k not in (TRIAL_ID_KEY, ARM_KEY, PHASE_KEY)}


def test_confirm_trials_follow_the_search_in_the_same_optuna_study(make_searcher):
    searcher = make_searcher()
    search = [searcher.suggest(f"s{i}") for i in range(3)]
    assert searcher.suggest("s3") == StudySearcher.FINISHED
    for i, value in enumerate([2.0, 1.0, 1.5]):
        _complete(searcher, f"s{i}", value)
    assert searcher.remaining() == 0 and searcher.confirm_selection() is None
    finished = searcher.finished_trials()
    selection, _ = select_confirm(finished, ("trial_0000", finished["trial_0000"]["values"]), 1, "min")
    searcher.store_confirm_selection(selection)
    searcher.start_confirm(confirm_trials(selection, [101, 102]))
    assert searcher.remaining() == 4
    configs = [searcher.suggest(f"c{i}") for i in range(4)]
    assert searcher.suggest("c4") == StudySearcher.FINISHED
    assert [(c[TRIAL_ID_KEY], c[ARM_KEY], c[PHASE_KEY], c["seed"]) for c in configs] == [
        ("trial_0003", "control", "confirm", 101),
        ("trial_0004", "top_1", "confirm", 101),
        ("trial_0005", "control", "confirm", 102),
        ("trial_0006", "top_1", "confirm", 102),
    ]
    assert _settings(configs[1]) == {**_settings(search[1]), "seed": 101}  # top_1 is trial_0001, seed replaced
    assert _settings(configs[0]) == {**CONTROL, "seed": 101}
    trials = searcher.study.get_trials()
    assert all("qstudy.phase" not in t.user_attrs for t in trials[:3])  # search trials: no phase
    assert [(t.user_attrs["qstudy.arm"], t.user_attrs["qstudy.phase"]) for t in trials[3:]] == [
        ("control", "confirm"),
        ("top_1", "confirm"),
        ("control", "confirm"),
        ("top_1", "confirm"),
    ]
    # The confirm seed is an override (outside the searched seed's range), the searched values params.
    assert [json.loads(t.user_attrs["qstudy.overrides"])["seed"] for t in trials[3:]] == [101, 101, 102, 102]
    assert trials[4].params == {"optimizer.quantum_weight": search[1]["optimizer.quantum_weight"]}
    assert json.loads(searcher.study.user_attrs["qstudy.confirm"]) == selection


def test_a_chained_confirm_phase_starts_in_the_same_run_once_the_search_has_finished(make_searcher):
    searcher = make_searcher()
    picks = []

    def start():  # what the driver's hook does: pick from the finished search, then switch
        finished = searcher.finished_trials()
        picks.append(sorted(finished))
        selection, _ = select_confirm(finished, ("trial_0000", finished["trial_0000"]["values"]), 1, "min")
        searcher.store_confirm_selection(selection)
        searcher.start_confirm(confirm_trials(selection, [101]))

    searcher.chain_confirm(start)
    search = [searcher.suggest(f"s{i}") for i in range(3)]
    _complete(searcher, "s0", 2.0)
    _complete(searcher, "s1", 1.0)
    # Every search trial started, one still running: wait (None), never FINISHED, no pick yet.
    assert searcher.suggest("c0") is None and searcher.suggest("c0") is None
    assert picks == [] and searcher.phase is None
    _complete(searcher, "s2", 1.5)
    configs = [searcher.suggest(f"c{i}") for i in range(2)]
    assert picks == [["trial_0000", "trial_0001", "trial_0002"]] and searcher.phase == "confirm"
    assert [(c[TRIAL_ID_KEY], c[ARM_KEY], c["seed"]) for c in configs] == [
        ("trial_0003", "control", 101),
        ("trial_0004", "top_1", 101),
    ]
    assert _settings(configs[1]) == {**_settings(search[1]), "seed": 101}
    assert searcher.suggest("c2") == StudySearcher.FINISHED
    assert picks == [["trial_0000", "trial_0001", "trial_0002"]]  # picked once


def test_a_chained_confirm_phase_reruns_a_killed_search_trial_first(make_searcher):
    first = make_searcher()
    for i in range(3):
        first.suggest(f"s{i}")
    _complete(first, "s0", 2.0)
    _complete(first, "s1", 1.0)
    # The driver dies with trial_0002 RUNNING; the next one re-runs it before any pick.
    second = make_searcher()
    picks = []
    second.chain_confirm(lambda: picks.append(1) or second.start_confirm([]))
    rerun = second.suggest("r0")
    assert rerun[TRIAL_ID_KEY] == "trial_0002" and picks == []
    assert second.suggest("r1") is None
    _complete(second, "r0", 1.5)
    assert second.suggest("r1") == StudySearcher.FINISHED and picks == [1]  # no top arm: no confirm trial


def test_a_resumed_confirm_phase_reruns_its_killed_trial_and_runs_the_missing_ones(make_searcher):
    first = make_searcher()
    for i, value in enumerate([2.0, 1.0, 1.5]):
        first.suggest(f"s{i}")
        _complete(first, f"s{i}", value)
    finished = first.finished_trials()
    selection, _ = select_confirm(finished, ("trial_0000", finished["trial_0000"]["values"]), 1, "min")
    first.store_confirm_selection(selection)
    first.start_confirm(confirm_trials(selection, [101, 102]))
    first.suggest("c0")
    first.suggest("c1")
    _complete(first, "c0", 2.1)
    # The driver dies here: trial_0004 (top_1, seed 101) is RUNNING, the seed-102 pair never started.

    second = make_searcher()
    assert second.remaining() == 0  # the search is done
    assert second.suggest("x") == StudySearcher.FINISHED  # and never re-runs a confirm trial
    stored = second.confirm_selection()
    assert stored == selection
    second.start_confirm(confirm_trials(stored, [101, 102]))
    assert second.remaining() == 3
    rerun, *fresh = [second.suggest(f"r{i}") for i in range(3)]
    assert (rerun[TRIAL_ID_KEY], rerun[ARM_KEY], rerun["seed"]) == ("trial_0004", "top_1", 101)
    assert [(c[TRIAL_ID_KEY], c[ARM_KEY], c["seed"]) for c in fresh] == [
        ("trial_0005", "control", 102),
        ("trial_0006", "top_1", 102),
    ]
    assert second.suggest("r3") == StudySearcher.FINISHED


def test_a_grid_search_and_its_confirm_phase_are_told_to_optuna(tmp_path):
    # https://github.com/optuna/optuna/issues/5141: GridSampler.after_trial raises under ask-and-tell once its grid is covered
    # (and on enqueued trials): the last grid point and every confirm trial would hit it.
    grid = {"optimizer.quantum_weight": [0.2, 0.5]}
    searcher = StudySearcher(
        study_name="grid",
        storage_url=f"sqlite:///{tmp_path / 'optuna.db'}",
        space={"optimizer.quantum_weight": optuna.distributions.CategoricalDistribution([0.2, 0.5])},
        sampler=optuna.samplers.GridSampler(grid, seed=0),
        metric="eval_loss",
        mode="min",
        num_samples=3,
        baselines=[{"optimizer.quantum_weight": 0.5, "quantum.enabled": False}],
    )
    for i, value in enumerate([2.0, 1.0, 1.5]):
        searcher.suggest(f"s{i}")
        _complete(searcher, f"s{i}", value)
    finished = searcher.finished_trials()
    selection, _ = select_confirm(finished, ("trial_0000", finished["trial_0000"]["values"]), 2, "min")
    searcher.start_confirm(confirm_trials(selection, [7]))
    for i, value in enumerate([2.1, 1.1, 1.4]):
        searcher.suggest(f"c{i}")
        _complete(searcher, f"c{i}", value)
    assert [(t.state.name, t.value) for t in searcher.study.get_trials()] == [
        ("COMPLETE", 2.0),
        ("COMPLETE", 1.0),
        ("COMPLETE", 1.5),
        ("COMPLETE", 2.1),
        ("COMPLETE", 1.1),
        ("COMPLETE", 1.4),
    ]
    assert searcher.remaining() == 0


# ------------------------------------------------------------------------- the summary


def _study(**over):
    return StudyConfig.model_validate(
        {
            "name": "search",
            "num_samples": 3,
            "space": {"optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 1.0}},
            "baselines": [CONTROL],
            "confirm": {"top_k": 2, "seeds": [101, 102]},
            "trial": {},
            **over,
        }
    )


def test_asha_stops_search_trials_never_confirm_trials():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    study = _study(scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    asha = _scheduler(study)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert _scheduler(_study()) is None
    asha.set_search_properties("eval_loss", "min")

    def trial(tid, **config):
        return SimpleNamespace(trial_id=tid, config=config)

    good, bad = trial("a"), trial("b")
    confirm = trial("c", **{PHASE_KEY: "confirm"})
    for t in (good, bad, confirm):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, {"step": 1, "eval_loss": 1.0}) == TrialScheduler.CONTINUE
    # Worse than the rung's median at step 1: a search trial stops, a confirm trial never does.
    assert asha.on_trial_result(None, bad, {"step": 1, "eval_loss": 9.0}) == TrialScheduler.STOP
    assert asha.on_trial_result(None, confirm, {"step": 1, "eval_loss": 99.0}) == TrialScheduler.CONTINUE
    asha.on_trial_complete(None, confirm, {"step": 6, "eval_loss": 99.0})
    asha.on_trial_remove(None, confirm)
    assert set(asha._trial_info) == {"a", "b"}  # the confirm trial was never in a bracket


def test_the_summary_names_the_confirmed_best_and_the_searchs_best_trial(tmp_path):
    study = _study(num_samples=4)
    paths = {
        "optuna_url": f"sqlite:///{tmp_path / 'optuna.db'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "output": str(tmp_path),
    }
    space = optuna_space(study)
    searcher = StudySearcher(
        "search",
        paths["optuna_url"],
        space,
        optuna.samplers.RandomSampler(seed=0),
        "eval_loss",
        "min",
        4,
        [dict(b) for b in study.baselines],
    )
    for i, value in enumerate([2.0, 1.0, 1.5, 1.8]):  # the search's best: trial_0001
        searcher.suggest(f"s{i}")
        _complete(searcher, f"s{i}", value)
    finished = searcher.finished_trials()
    selection, _ = select_confirm(finished, ("trial_0000", finished["trial_0000"]["values"]), 2, "min")
    assert [selection[a]["from_trial"] for a in ("top_1", "top_2")] == ["trial_0001", "trial_0002"]
    searcher.start_confirm(confirm_trials(selection, [101, 102]))
    # control, top_1, top_2 on seed 101, then on 102: top_2 confirms better than top_1.
    for i, value in enumerate([2.0, 1.6, 1.2, 2.2, 1.4, 1.4]):
        searcher.suggest(f"c{i}")
        _complete(searcher, f"c{i}", value)
    tracker = StudyTracker(paths["tracking_uri"], "search", "search")
    tracker.start_study({}, {})
    summary = _summary(study, searcher, tracker, paths, "search.yaml", _columns(study), {}, selection)

    best = summary["best"]
    assert (best["arm"], best["trial_id"], best["search_best_trial_id"]) == ("top_2", "trial_0002", "trial_0001")
    assert best["value"] == pytest.approx(1.3) and best["control_value"] == pytest.approx(2.1)
    assert best["params"] == selection["top_2"]["values"] and best["seeds"] == [101, 102]
    confirm_rows = [r for r in summary["trials"] if r.get("phase") == "confirm"]
    assert [(r["trial"], r["arm"], r["seed"]) for r in confirm_rows] == [
        ("trial_0004", "control", 101),
        ("trial_0005", "top_1", 101),
        ("trial_0006", "top_2", 101),
        ("trial_0007", "control", 102),
        ("trial_0008", "top_1", 102),
        ("trial_0009", "top_2", 102),
    ]
    text = summary["text"]
    assert "study search: 4/4 trials" in text
    assert (
        "confirm: 6/6 trials on fresh seeds 101, 102 (top_1 = trial_0001, top_2 = trial_0002, control = trial_0000)"
    ) in text
    lines = text.splitlines()
    header = lines[lines.index(next(line for line in lines if line.startswith("confirm:"))) + 1]
    assert header.split() == [
        "trial",
        "status",
        "arm",
        "seed",
        "quantum_weight",
        "enabled",
        "step",
        "eval_loss",
        "elapsed_s",
    ]
    assert (
        "confirmed best: top_2 (trial_0002's configuration) mean eval_loss=1.3 over seeds 101, 102, control "
        "mean eval_loss=2.1 over the same seeds; the search's best trial was trial_0001 (eval_loss=1); "
        "top_1 mean 1.5 (control 2.1, seeds 101, 102)"
    ) in text
    assert "\nbest: " not in text

    tracker.finish_study(best, text, description=summary["description"])
    parent = tracker.mlflow_client.get_run(tracker.parent_run_id).data
    # The parent run's description in the MLflow UI: both tables and the confirmed best, as markdown.
    md = parent.tags["mlflow.note.content"]
    assert md == summary["description"] and md.startswith("## Study `search`: min `eval_loss`")
    assert "Confirm trials (fresh seeds):" in md and "| trial_0006 | completed | top_2 | 101 |" in md
    assert "**confirmed best: top_2 (trial_0002's configuration) mean eval_loss=1.3" in md
    assert parent.tags["qstudy.best_arm"] == "top_2" and parent.tags["qstudy.best_trial_id"] == "trial_0002"
    assert parent.tags["qstudy.search_best_trial_id"] == "trial_0001"
    assert parent.metrics["best_eval_loss"] == pytest.approx(1.3)
    assert parent.metrics["control_eval_loss"] == pytest.approx(2.1)


def test_the_progress_table_shows_the_confirm_trials_in_a_table_of_their_own():
    from types import SimpleNamespace

    from qstudy.study._callbacks import ProgressCallback

    printed = []
    progress = ProgressCallback(
        "eval_loss", ["optimizer.quantum_weight"], 0.0, printed.append, confirm_columns=["arm", "seed"]
    )

    def trial(tid, status, loss, **config):
        return SimpleNamespace(
            trial_id=tid,
            status=status,
            config={TRIAL_ID_KEY: tid, **config},
            last_result={"step": 6, "eval_loss": loss, "status": "completed"},
        )

    search = trial("trial_0000", "TERMINATED", 1.5, **{"optimizer.quantum_weight": 0.25})
    confirm = trial("trial_0001", "RUNNING", 1.25, **{PHASE_KEY: "confirm", ARM_KEY: "control", "seed": 7})
    progress.on_step_end(0, [search])
    assert "confirm trials" not in printed[-1] and "0.25" in printed[-1]
    progress.on_step_end(1, [search, confirm])
    head, tail = printed[-1].split("confirm trials:\n")
    assert "trial_0000" in head and "trial_0001" not in head
    assert tail.splitlines()[0].split() == ["trial", "status", "arm", "seed", "step", "eval_loss", "elapsed_s"]
    assert tail.splitlines()[1].split() == ["trial_0001", "running", "control", "7", "6", "1.25", "-"]

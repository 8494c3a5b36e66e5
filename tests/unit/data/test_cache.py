"""The tokenized-data cache: a hit gives back what was built, writes are atomic."""

import threading

import pytest
import torch

from qstudy.data import cached, file_fingerprint, fingerprint


def _value(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": {"input_ids": torch.randint(0, 259, (4, 8), generator=generator)},
        "problems": [([257, 1, 2], "#### 3"), ([257, 4], "#### 4")],
    }


def _assert_same(a: dict, b: dict) -> None:
    assert torch.equal(a["train"]["input_ids"], b["train"]["input_ids"])
    assert a["problems"] == b["problems"]


def test_a_second_call_reads_what_the_first_built(tmp_path):
    built = []
    first = cached(tmp_path, "k", lambda: built.append(1) or _value())
    second = cached(tmp_path, "k", lambda: built.append(2) or _value(1))
    assert built == [1]
    _assert_same(first, _value())
    _assert_same(second, _value())
    assert isinstance(second["problems"][0], tuple)  # the same types, not only the same values
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]


def test_an_unreadable_entry_is_built_again_and_replaced(tmp_path):
    (tmp_path / "k.pt").write_bytes(b"half a file")
    value = cached(tmp_path, "k", _value)
    _assert_same(value, _value())
    _assert_same(torch.load(tmp_path / "k.pt", weights_only=True), _value())


def test_a_failed_write_leaves_no_file_and_still_returns_the_value(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    value = cached(tmp_path, "k", _value)
    _assert_same(value, _value())
    assert list(tmp_path.iterdir()) == []  # neither the entry nor its temporary file


def test_two_builds_at_once_both_succeed_and_leave_one_whole_entry(tmp_path):
    results, gate = [None, None], threading.Barrier(2)

    def build():
        gate.wait()  # both miss, both build, both write
        return _value()

    def run(i):
        results[i] = cached(tmp_path, "k", build)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        _assert_same(result, _value())
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]
    _assert_same(torch.load(tmp_path / "k.pt", weights_only=True), _value())


def test_fingerprints_change_with_what_they_hash(tmp_path):
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = file_fingerprint(tmp_path)
    assert list(before) == ["tokenizer.json"]  # weights are not hashed
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert file_fingerprint(tmp_path) == before
    (tmp_path / "tokenizer.json").write_text('{"changed": 1}')
    assert file_fingerprint(tmp_path) != before


@pytest.mark.parametrize("name", ["k"])
def test_the_cache_folder_is_created(tmp_path, name):
    cached(tmp_path / "a" / "b", name, _value)
    assert (tmp_path / "a" / "b" / f"{name}.pt").is_file()

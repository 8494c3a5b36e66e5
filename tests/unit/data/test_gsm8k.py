"""GSM8K loading (JSONL and saved HF datasets), errors, prompts, label masks and batches."""

import json
import subprocess
import sys

import pyarrow as pa
import pytest
import torch

from qstudy.data import (
    IGNORE_INDEX,
    DataError,
    EncodedExample,
    GSM8KExample,
    collate_batch,
    encode_example,
    encode_gsm8k,
    encode_prompt,
    find_pad_token_id,
    format_example,
    format_prompt,
    load_gsm8k,
    synthesize_gsm8k,
)

GOOD = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3 = <<2+3=5>>5\n#### 5"}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ============================================================================ JSONL
def test_reads_jsonl_and_skips_blank_lines(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD), "", "  ", json.dumps({**GOOD, "question": "Q2"})])
    examples = load_gsm8k(path)
    assert examples == [GSM8KExample(GOOD["question"], GOOD["answer"]), GSM8KExample("Q2", GOOD["answer"])]


def test_real_gsm8k_splits_load(gsm8k_train_path):
    train = load_gsm8k(gsm8k_train_path)
    assert len(train) == 7473
    assert train[0].question.startswith("Natalia sold clips to 48 of her friends")
    test_path = gsm8k_train_path.with_name("test.jsonl")
    if test_path.is_file():
        assert len(load_gsm8k(test_path)) == 1319


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"GSM8K data not found: {tmp_path / 'nope.jsonl'} does not exist"):
        load_gsm8k(tmp_path / "nope.jsonl")


def test_empty_file_is_refused(tmp_path):
    path = _write_lines(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(DataError, match=r"empty\.jsonl contains no GSM8K problems"):
        load_gsm8k(path)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"question": "Q", "answer": "#### 1"', r"not valid JSON \(Expecting ',' delimiter"),
        ('["Q", "#### 1"]', "expected a JSON object with 'question' and 'answer', got list"),
        ('{"answer": "#### 1"}', r"missing 'question' \(keys found: \['answer'\]\)"),
        ('{"q": "Q", "a": "#### 1"}', r"missing 'question' and 'answer'"),
        ('{"question": "Q", "answer": 7}', "'answer' must be a string, got int"),
        (
            '{"question": "Q", "answer": "so it is 5"}',
            r"answer has no final '#### <number>' line \(it ends with 'so it is 5'\)",
        ),
        ('{"question": "Q", "answer": "#### five"}', "answer has no final '#### <number>' line"),
    ],
)
def test_malformed_line_reports_file_line_and_problem(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), json.dumps(GOOD), bad_line])
    with pytest.raises(DataError, match=message) as raised:
        load_gsm8k(path)
    assert f"{path}:3: " in str(raised.value)
    assert "1 malformed GSM8K problem:" in str(raised.value)


def test_all_malformed_lines_are_reported_at_once(tmp_path):
    lines = [json.dumps(GOOD), "not json", json.dumps({"question": "Q"})] + ["{"] * 12
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as raised:
        load_gsm8k(path)
    message = str(raised.value)
    assert "14 malformed GSM8K problems" in message
    assert f"{path}:2: not valid JSON" in message and f"{path}:3: missing 'answer'" in message
    assert "... and 4 more" in message  # 10 listed


def test_split_on_a_jsonl_file_is_refused(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD)])
    with pytest.raises(DataError, match="split='train' only applies to a saved DatasetDict directory"):
        load_gsm8k(path, split="train")


# ============================================================================ saved HF datasets
def _save_to_disk(directory, rows_per_shard, split="train"):
    """What `datasets.Dataset.save_to_disk` writes, built with pyarrow alone."""
    directory.mkdir(parents=True)
    n_shards = len(rows_per_shard)
    schema = pa.schema([("question", pa.string()), ("answer", pa.string())])
    files = []
    for index, rows in enumerate(rows_per_shard):
        name = f"data-{index:05d}-of-{n_shards:05d}.arrow"
        table = pa.Table.from_pylist(rows, schema=schema)
        with pa.OSFile(str(directory / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table)
        files.append({"filename": name})
    state = {
        "_data_files": files,
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }
    (directory / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    info = {
        "features": {
            "question": {"dtype": "string", "_type": "Value"},
            "answer": {"dtype": "string", "_type": "Value"},
        },
        "splits": {split: {"name": split, "num_examples": sum(map(len, rows_per_shard))}},
    }
    (directory / "dataset_info.json").write_text(json.dumps(info))
    return directory


def _rows(examples):
    return [{"question": e.question, "answer": e.answer} for e in examples]


def test_reads_a_sharded_saved_dataset_in_shard_order(tmp_path):
    examples = synthesize_gsm8k(7, seed=0)
    directory = _save_to_disk(tmp_path / "ds", [_rows(examples[:4]), _rows(examples[4:])])
    assert load_gsm8k(directory) == examples


def test_reads_a_split_of_a_saved_dataset_dict(tmp_path):
    train, test = synthesize_gsm8k(5, seed=1), synthesize_gsm8k(3, seed=2)
    _save_to_disk(tmp_path / "dd" / "train", [_rows(train)])
    _save_to_disk(tmp_path / "dd" / "test", [_rows(test)], split="test")
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert load_gsm8k(tmp_path / "dd", split="test") == test
    with pytest.raises(
        DataError, match=r"saved DatasetDict with splits \['train', 'test'\]: pass split= one of them, got split=None"
    ):
        load_gsm8k(tmp_path / "dd")


def test_saved_dataset_errors_name_the_file(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="is a directory but not a saved HF dataset: expected state.json"):
        load_gsm8k(tmp_path / "plain")

    directory = _save_to_disk(
        tmp_path / "bad", [[{"question": "Q", "answer": "no number"}, _rows([GSM8KExample("Q", "#### 1")])[0]]]
    )
    with pytest.raises(DataError, match=r"data-00000-of-00001\.arrow: row 0: answer has no final '#### <number>' line"):
        load_gsm8k(directory)

    directory = tmp_path / "cols"
    directory.mkdir()
    table = pa.table({"question": ["Q"], "solution": ["#### 1"]})
    with (
        pa.OSFile(str(directory / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    (directory / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['answer'\] \(columns found: \['question', 'solution'\]\)"
    ):
        load_gsm8k(directory)

    (directory / "data-00000-of-00001.arrow").unlink()
    with pytest.raises(DataError, match=r"data file .*data-00000-of-00001\.arrow listed in state\.json does not exist"):
        load_gsm8k(directory)


def test_empty_saved_dataset_is_refused(tmp_path):
    directory = _save_to_disk(tmp_path / "empty", [[]])
    with pytest.raises(DataError, match="empty contains no GSM8K problems"):
        load_gsm8k(directory)


# ============================================================================ prompts and labels
def test_plain_prompt_without_chat_template(plain_byte_tok):
    assert format_prompt("What is 2+2?", plain_byte_tok) == "Question: What is 2+2?\nAnswer: "
    assert format_example("What is 2+2?", "#### 4", plain_byte_tok) == (
        "Question: What is 2+2?\nAnswer: ",
        "#### 4<eos>",
    )


def test_chat_template_prompt_and_completion(byte_tok):
    prompt, completion = format_example("What is 2+2?", "#### 4", byte_tok)
    assert prompt == "<bos><|user|>\nWhat is 2+2?<eos><|assistant|>\n"
    assert completion == "#### 4<eos>"


_LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_completion_is_what_the_template_renders_after_the_prompt():
    """A Llama-3-style template ends the turn with its own token, not EOS; the completion keeps it."""
    from qstudy.data import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.chat_template = _LLAMA3_LIKE
    prompt, completion = format_example("Q?", "#### 4\n", tokenizer)
    assert (
        prompt
        == "<bos><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert completion == "#### 4<|eot_id|>"


def test_template_that_does_not_extend_its_prompt_falls_back_to_answer_and_eos(caplog):
    from qstudy.data import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %}>>{% endif %}"
    )
    prompt, completion = format_example("Q?", "#### 4", tokenizer)
    assert (prompt, completion) == ("[Q?]>>", "#### 4<eos>")
    assert "chat template does not extend its generation prompt" in caplog.text


@pytest.mark.parametrize("tokenizer_name", ["byte_tok", "plain_byte_tok"])
def test_loss_only_on_answer_tokens(request, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    example = GSM8KExample("What is 2+2?", "2+2=4\n#### 4")
    encoded = encode_example(example, tokenizer, max_tokens=512)
    prompt, completion = format_example(example.question, example.answer, tokenizer)
    n_prompt = len(tokenizer(prompt, add_special_tokens=tokenizer_name == "plain_byte_tok")["input_ids"])
    assert encoded.input_ids[:n_prompt] == encode_prompt(example.question, tokenizer)
    assert encoded.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert encoded.labels[n_prompt:] == encoded.input_ids[n_prompt:]
    assert tokenizer.decode(encoded.labels[n_prompt:]) == "2+2=4\n#### 4<eos>"
    assert encoded.input_ids[0] == tokenizer.bos_token_id and encoded.input_ids.count(tokenizer.bos_token_id) == 1
    assert not encoded.truncated and encoded.answer_tokens == len("2+2=4\n#### 4") + 1


def test_truncation_to_max_tokens_keeps_the_start(plain_byte_tok):
    example = GSM8KExample("Q?", "a long answer\n#### 1")
    full = encode_example(example, plain_byte_tok, max_tokens=512)
    cut = encode_example(example, plain_byte_tok, max_tokens=20)
    assert len(cut.input_ids) == 20 and cut.truncated
    assert cut.input_ids == full.input_ids[:20] and cut.labels == full.labels[:20]


def test_examples_without_answer_tokens_are_dropped(plain_byte_tok, caplog):
    short, long = GSM8KExample("Q?", "#### 1"), GSM8KExample("Q" * 50 + "?", "#### 1")
    encoded = encode_gsm8k([short, long], plain_byte_tok, max_tokens=30)
    assert len(encoded) == 1 and encoded[0].answer_tokens > 0
    assert "dropped 1 of 2 examples whose prompt fills it" in caplog.text
    with pytest.raises(
        DataError, match="max_tokens=5 is too small: the prompt of every one of the 2 examples fills it"
    ):
        encode_gsm8k([short, long], plain_byte_tok, max_tokens=5)
    with pytest.raises(ValueError, match="max_tokens must be a positive integer, got max_tokens=0"):
        encode_gsm8k([short], plain_byte_tok, max_tokens=0)


# ============================================================================ batches
def test_collate_pads_to_a_fixed_length_with_masks():
    examples = [
        EncodedExample(input_ids=[1, 2, 3, 4], labels=[-100, -100, 3, 4], truncated=False),
        EncodedExample(input_ids=[5, 6], labels=[-100, 6], truncated=False),
    ]
    batch = collate_batch(examples, max_tokens=6, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 0, 0], [5, 6, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, -100, -100], [-100, 6, -100, -100, -100, -100]]
    assert all(t.dtype == torch.long for t in batch.values())
    with pytest.raises(ValueError, match="example 0 has 4 tokens, more than max_tokens=3"):
        collate_batch(examples, max_tokens=3, pad_token_id=0)


def test_batches_of_real_tokens_feed_a_tiny_llama(byte_tok):
    """End to end: the loss of a batch is the mean over answer tokens only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    encoded = encode_gsm8k(synthesize_gsm8k(4, seed=0), byte_tok, max_tokens=384)  # 205-318 bytes each
    assert len(encoded) == 4 and not any(e.truncated for e in encoded)
    batch = collate_batch(encoded, max_tokens=384, pad_token_id=find_pad_token_id(byte_tok))
    assert batch["input_ids"].shape == (4, 384)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(byte_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=384,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits[:, :-1].reshape(-1, len(byte_tok))  # [b*(t-1), vocab]
    targets = batch["labels"][:, 1:].reshape(-1)
    expected = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    answer_tokens = int((batch["labels"] != IGNORE_INDEX).sum())
    assert answer_tokens == sum(e.answer_tokens for e in encoded) < int(batch["attention_mask"].sum())


def test_importing_qstudy_data_loads_no_ray_mlflow_deepspeed_or_transformers():
    code = (
        "import sys, qstudy.data\n"
        "print(sorted(m for m in ('ray', 'mlflow', 'deepspeed', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_pad_token_falls_back_to_eos(byte_tok):
    class NoPad:
        pad_token_id, eos_token_id = None, [128009, 128001]

    class Nothing:
        pad_token_id = eos_token_id = None

    assert find_pad_token_id(byte_tok) == 256
    assert find_pad_token_id(NoPad()) == 128009
    with pytest.raises(DataError, match="tokenizer Nothing has neither a pad nor an EOS token"):
        find_pad_token_id(Nothing())

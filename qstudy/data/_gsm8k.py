"""GSM8K: loading (JSONL or a saved HF `datasets` directory), prompts, tokens, batches.

The official format (openai/grade-school-math) is one JSON object per line with a
``question`` and an ``answer`` whose last line is ``#### <number>``. The same columns
saved with ``datasets.Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``) are read
with pyarrow alone — the `datasets` package is not needed: such a directory holds
``state.json`` (its ``_data_files`` list the shards in order), ``dataset_info.json`` and
shards ``data-0000i-of-0000N.arrow`` in Arrow IPC *stream* format; a `DatasetDict` adds
``dataset_dict.json`` (``{"splits": [...]}``) and one such directory per split.

Training examples are prompt + completion. The prompt is the tokenizer's chat template
applied to the question (as a user turn, with the generation prompt) when the tokenizer
has one, else ``"Question: {question}\\nAnswer: "``; the completion is the answer and
the end-of-turn / end-of-sequence token. Loss is on completion tokens only: ``labels``
is -100 on the prompt and on padding. Sequences are cut to ``max_tokens`` (the end is
dropped) and padded on the right to exactly ``max_tokens``, so every batch has the
same shape.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qstudy.data._answers import ANSWER_MARKER
from qstudy.data._errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "EncodedExample",
    "GSM8KExample",
    "collate_batch",
    "encode_example",
    "encode_gsm8k",
    "encode_prompt",
    "find_pad_token_id",
    "format_example",
    "format_prompt",
    "load_gsm8k",
    "save_gsm8k_jsonl",
]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (torch's ``cross_entropy`` default ``ignore_index``)."""

_MAX_REPORTED_PROBLEMS = 10
_FINAL_LINE = re.compile(re.escape(ANSWER_MARKER) + r"\s*[-+−]?\$?\s*(\d[\d,]*(\.\d+)?|\.\d+)(/\d+)?\s*$")


@dataclasses.dataclass(frozen=True)
class GSM8KExample:
    """One problem: the question and the worked answer ending ``#### <number>``."""

    question: str
    answer: str


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """One tokenized example, not yet padded (both lists have the same length)."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens
    truncated: bool  # whether max_tokens cut off part of the completion

    @property
    def answer_tokens(self) -> int:
        """How many tokens carry loss."""
        return sum(label != IGNORE_INDEX for label in self.labels)


# ============================================================================ loading
def load_gsm8k(path: str | Path, *, split: str | None = None) -> list[GSM8KExample]:
    """Reads GSM8K problems from a JSONL file or a saved HF `datasets` directory.

    Every problem is checked: ``question`` and ``answer`` are strings and the answer ends
    with a ``#### <number>`` line. All problems found (up to 10) are reported at once.

    Args:
        path: A ``.jsonl`` file (one ``{"question": ..., "answer": ...}`` per line; blank
            lines are skipped), a ``save_to_disk`` directory of a `Dataset`, or one of a
            `DatasetDict` (then ``split`` picks the split).
        split: The split of a `DatasetDict` directory (e.g. ``"train"``); must be None
            for a JSONL file or a single `Dataset` directory.

    Returns:
        The problems in file order.

    Raises:
        DataError: The path does not exist; a line is not JSON, not an object, lacks
            ``question``/``answer`` or has an answer without a final ``#### <number>``
            (reported as ``file:line: ...``); the directory is not a saved dataset or
            lacks a column; the split is unknown; there are no problems.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"GSM8K data not found: {path} does not exist")
    if path.is_dir():
        examples, where = _read_saved_dataset(path, split), path
    else:
        if split is not None:
            raise DataError(f"split={split!r} only applies to a saved DatasetDict directory, got the file {path}")
        examples, where = _read_jsonl(path), path
    if not examples:
        raise DataError(
            f"{where} contains no GSM8K problems (expected one JSON object per line with 'question' and 'answer')"
        )
    return examples


def _check_record(record: Any) -> tuple[GSM8KExample | None, str | None]:
    """The example of one record, or what is wrong with it."""
    if not isinstance(record, dict):
        return None, f"expected a JSON object with 'question' and 'answer', got {type(record).__name__}"
    missing = [key for key in ("question", "answer") if key not in record or record[key] is None]
    if missing:
        return None, f"missing {' and '.join(repr(k) for k in missing)} (keys found: {sorted(record)})"
    for key in ("question", "answer"):
        if not isinstance(record[key], str):
            return None, f"{key!r} must be a string, got {type(record[key]).__name__}"
    if not _FINAL_LINE.search(record["answer"].rstrip()):
        tail = record["answer"].rstrip()[-40:]
        return None, f"answer has no final '{ANSWER_MARKER} <number>' line (it ends with {tail!r})"
    return GSM8KExample(question=record["question"], answer=record["answer"]), None


def _raise_problems(where: Path, problems: list[str], total: int) -> None:
    more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
    noun = "problem" if total == 1 else "problems"
    raise DataError(f"{where}: {total} malformed GSM8K {noun}:\n  " + "\n  ".join(problems) + more)


def _read_jsonl(path: Path) -> list[GSM8KExample]:
    examples, problems, n_problems = [], [], 0
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                example, problem = None, f"not valid JSON ({error.msg} at column {error.colno})"
            else:
                example, problem = _check_record(record)
            if problem is not None:
                n_problems += 1
                if len(problems) < _MAX_REPORTED_PROBLEMS:
                    problems.append(f"{path}:{line_no}: {problem}")
            else:
                examples.append(example)
    if n_problems:
        _raise_problems(path, problems, n_problems)
    return examples


def _read_saved_dataset(path: Path, split: str | None) -> list[GSM8KExample]:
    """Reads a ``save_to_disk`` directory with pyarrow (Arrow IPC stream shards)."""
    import pyarrow as pa

    dict_file = path / "dataset_dict.json"
    if dict_file.is_file():
        splits = json.loads(dict_file.read_text(encoding="utf-8")).get("splits", [])
        if split not in splits:
            raise DataError(
                f"{path} is a saved DatasetDict with splits {splits}: pass split= one of them, got split={split!r}"
            )
        return _read_saved_dataset(path / split, None)
    if split is not None:
        raise DataError(
            f"split={split!r} only applies to a saved DatasetDict directory; {path} has no dataset_dict.json"
        )
    state_file = path / "state.json"
    if not state_file.is_file():
        raise DataError(
            f"{path} is a directory but not a saved HF dataset: expected state.json and data-*.arrow "
            "(datasets' save_to_disk layout) or dataset_dict.json"
        )
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if state.get("_indices_data_files"):
        raise DataError(
            f"{path}: saved with an indices mapping, which is not read here; save it after flatten_indices()"
        )
    shards = [entry["filename"] for entry in state.get("_data_files", [])]
    if not shards:
        raise DataError(f"{path}/state.json lists no data files ('_data_files' is empty)")
    examples, problems, n_problems, row = [], [], 0, 0
    for shard in shards:
        shard_path = path / shard
        if Path(shard).name != shard:
            raise DataError(f"{state_file}: data file {shard!r} is not a plain file name")
        if not shard_path.is_file():
            raise DataError(f"{path}: data file {shard_path} listed in state.json does not exist")
        try:
            with pa.memory_map(str(shard_path)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid as error:
            raise DataError(f"{shard_path}: not an Arrow IPC stream ({error})") from error
        missing = [c for c in ("question", "answer") if c not in table.column_names]
        if missing:
            raise DataError(f"{shard_path}: missing column(s) {missing} (columns found: {table.column_names})")
        questions, answers = table.column("question").to_pylist(), table.column("answer").to_pylist()
        for index, (question, answer) in enumerate(zip(questions, answers)):
            example, problem = _check_record({"question": question, "answer": answer})
            if problem is not None:
                n_problems += 1
                if len(problems) < _MAX_REPORTED_PROBLEMS:
                    problems.append(f"{shard_path}: row {row + index}: {problem}")
            else:
                examples.append(example)
        row += table.num_rows
    if n_problems:
        _raise_problems(path, problems, n_problems)
    return examples


def save_gsm8k_jsonl(examples: Iterable[GSM8KExample], path: str | Path) -> Path:
    """Writes problems in the official JSONL format (one object per line, UTF-8).

    Args:
        examples: The problems to write.
        path: The output file; parent directories are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps({"question": example.question, "answer": example.answer}, ensure_ascii=False) + "\n")
    return path


# ============================================================================ prompts
def _has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(question: str, tokenizer: PreTrainedTokenizerBase) -> str:
    """The text a model is given for a question (generation starts right after it).

    Args:
        question: The problem text.
        tokenizer: Its chat template is used when it has one (a user turn plus the
            generation prompt); otherwise ``"Question: {question}\\nAnswer: "``.

    Returns:
        The prompt. A chat-template prompt already contains the template's BOS text, so
        tokenize it with ``add_special_tokens=False``.
    """
    if _has_chat_template(tokenizer):
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"Question: {question}\nAnswer: "


def format_example(question: str, answer: str, tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """Splits a training example into the prompt and the completion that carries the loss.

    With a chat template the completion is whatever the template renders after the
    prompt for the assistant turn (the answer and its end-of-turn text, e.g. Llama 3's
    ``<|eot_id|>``); without one (or if the template does not extend the prompt) it
    is the answer followed by the tokenizer's EOS text.

    Args:
        question: The problem text.
        answer: The worked solution.
        tokenizer: As in `format_prompt`.

    Returns:
        ``(prompt, completion)``.
    """
    prompt = format_prompt(question, tokenizer)
    if _has_chat_template(tokenizer):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(prompt) and answer.strip() in full[len(prompt) :]:
            return prompt, full[len(prompt) :]
        logger.warning("chat template does not extend its generation prompt; using answer + EOS as the completion")
    return prompt, answer + (tokenizer.eos_token or "")


# ============================================================================ tokens
def encode_prompt(question: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The prompt's token ids exactly as `encode_example` writes them (for generation).

    Args:
        question: The problem text.
        tokenizer: As in `format_prompt`; special tokens (BOS) are added unless the
            chat template writes them itself.

    Returns:
        The ids; a model generating after them sees what it was trained on.
    """
    return _prompt_ids(format_prompt(question, tokenizer), tokenizer)


def _prompt_ids(prompt: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    add_special = not _has_chat_template(tokenizer)
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]


def encode_example(example: GSM8KExample, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int) -> EncodedExample:
    """Tokenizes one example with loss on the completion only, cut to ``max_tokens``.

    Prompt and completion are tokenized separately, so the boundary between them is
    exact. The prompt gets the tokenizer's special tokens (e.g. BOS) unless it came
    from a chat template, which writes them itself.

    Args:
        example: The problem.
        tokenizer: A HuggingFace tokenizer (`byte_tokenizer` or a checkpoint's).
        max_tokens: Keep at most this many tokens (the end is dropped).

    Returns:
        The ids and labels (``IGNORE_INDEX`` on the prompt).
    """
    _check_max_tokens(max_tokens)
    prompt, completion = format_example(example.question, example.answer, tokenizer)
    prompt_ids = _prompt_ids(prompt, tokenizer)  # what encode_prompt gives, without rendering the prompt again
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + completion_ids)[:max_tokens]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_tokens]
    return EncodedExample(
        input_ids=input_ids, labels=labels, truncated=len(prompt_ids) + len(completion_ids) > max_tokens
    )


def encode_gsm8k(
    examples: Sequence[GSM8KExample], tokenizer: PreTrainedTokenizerBase, *, max_tokens: int
) -> list[EncodedExample]:
    """Tokenizes problems (see `encode_example`), dropping those with no answer token left.

    An example whose prompt alone fills ``max_tokens`` would add nothing to the loss,
    and a batch of only such examples has a 0/0 (NaN) mean loss, which would end a trial
    as diverged; they are dropped with a warning. Truncated examples are counted in a
    warning too.

    Args:
        examples: The problems.
        tokenizer: A HuggingFace tokenizer.
        max_tokens: The sequence length of every batch.

    Returns:
        One `EncodedExample` per kept problem, in order.

    Raises:
        DataError: No example keeps an answer token (``max_tokens`` too small).
    """
    _check_max_tokens(max_tokens)
    encoded = [encode_example(example, tokenizer, max_tokens=max_tokens) for example in examples]
    kept = [e for e in encoded if e.answer_tokens > 0]
    n_truncated = sum(e.truncated for e in kept)
    if examples and not kept:
        raise DataError(
            f"max_tokens={max_tokens} is too small: the prompt of every one of the {len(examples)} examples fills it"
        )
    if len(kept) < len(encoded):
        logger.warning(
            "max_tokens=%d: dropped %d of %d examples whose prompt fills it",
            max_tokens,
            len(encoded) - len(kept),
            len(encoded),
        )
    if n_truncated:
        logger.warning("max_tokens=%d: cut the completion of %d of %d examples", max_tokens, n_truncated, len(kept))
    return kept


def _check_max_tokens(max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got max_tokens={max_tokens!r}")


def find_pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS (Llama 3 has no pad).

    Padding never reaches the loss (labels -100, attention mask 0), so EOS is safe.

    Raises:
        DataError: The tokenizer has neither.
    """
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    raise DataError(f"tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token: set tokenizer.pad_token")


def collate_batch(examples: Sequence[EncodedExample], *, max_tokens: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pads encoded examples on the right to exactly ``max_tokens``.

    Use as a ``DataLoader`` ``collate_fn`` via ``functools.partial``.

    Args:
        examples: From `encode_gsm8k`; none may be longer than ``max_tokens``.
        max_tokens: The sequence length of the batch.
        pad_token_id: See `find_pad_token_id`.

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels``, each int64 ``[batch, max_tokens]``;
        padding has attention 0 and label -100.

    Raises:
        ValueError: An example is longer than ``max_tokens``, or there are none.
    """
    _check_max_tokens(max_tokens)
    if not examples:
        raise ValueError("collate_batch needs at least one example, got 0")
    input_ids = torch.full((len(examples), max_tokens), pad_token_id, dtype=torch.long)  # [b, t]
    attention_mask = torch.zeros((len(examples), max_tokens), dtype=torch.long)  # [b, t]
    labels = torch.full((len(examples), max_tokens), IGNORE_INDEX, dtype=torch.long)  # [b, t]
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        if length > max_tokens:
            raise ValueError(
                f"example {row} has {length} tokens, more than max_tokens={max_tokens}: encode with the same max_tokens"
            )
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        attention_mask[row, :length] = 1
        labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

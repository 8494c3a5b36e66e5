"""Data of a trial: GSM8K and its prompts, answer checking, and the synthetic tasks.

* GSM8K from JSONL or a saved HF `datasets` directory (`load_gsm8k`), prompts through
  the tokenizer's chat template or a plain format (`format_prompt`, `format_example`),
  tokens with loss on the answer only (`encode_gsm8k`; `encode_prompt` for generation)
  and fixed-length batches (`collate_batch`).
* Answers: `final_answer` and `answers_match` (exact numeric equality).
* Offline data: GSM8K-format word problems (`synthesize_gsm8k`), the paper's
  experiment-1 classification task (`make_classification_task`) and a byte-level
  tokenizer for tiny models (`byte_tokenizer`).
* A disk cache of tokenized data, so a study's trials tokenize once (`cached`,
  `data_cache_dir`, keyed by `fingerprint` and `file_fingerprint`).

Depends on torch, tokenizers, pyarrow and (inside the functions that need it)
transformers; never on ray, mlflow or deepspeed.
"""

from qstudy.data._answers import answers_match, final_answer, parse_number
from qstudy.data._cache import cached, data_cache_dir, file_fingerprint, fingerprint
from qstudy.data._classification import ClassificationSplit, ClassificationTask, make_classification_task
from qstudy.data._errors import DataError
from qstudy.data._gsm8k import (
    IGNORE_INDEX,
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
    save_gsm8k_jsonl,
)
from qstudy.data._synthetic import SYNTHETIC_TEMPLATES, synthesize_gsm8k
from qstudy.data._tokenizer import BYTE_CHAT_TEMPLATE, byte_tokenizer

__all__ = [
    "BYTE_CHAT_TEMPLATE",
    "IGNORE_INDEX",
    "SYNTHETIC_TEMPLATES",
    "ClassificationSplit",
    "ClassificationTask",
    "DataError",
    "EncodedExample",
    "GSM8KExample",
    "answers_match",
    "byte_tokenizer",
    "cached",
    "collate_batch",
    "data_cache_dir",
    "encode_example",
    "encode_gsm8k",
    "encode_prompt",
    "file_fingerprint",
    "final_answer",
    "find_pad_token_id",
    "fingerprint",
    "format_example",
    "format_prompt",
    "load_gsm8k",
    "make_classification_task",
    "parse_number",
    "save_gsm8k_jsonl",
    "synthesize_gsm8k",
]

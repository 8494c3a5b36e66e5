"""A trial's data as the worker loop sees it: deterministic global batches split over
ranks and micro-batches, eval shards, and GSM8K accuracy by greedy generation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from qstudy.config import TrialConfig

__all__ = ["TrialData", "build_trial_data"]


@dataclasses.dataclass
class TrialData:
    """A trial's data, tokenized, and how the worker loop draws from it.

    Holds the train and held-out tensors, the tokenizer and the sizes the model is built
    with; :meth:`micro_batches` gives a rank its share of each optimizer step's global
    batch, :meth:`eval_batches` its share of the held-out set, and
    :meth:`generate_accuracy` scores GSM8K answers by greedy generation. Built by
    :func:`build_trial_data`, deterministic per seed.
    """

    kind: str  # "causal_lm" or "classification"
    tokenizer: Any
    train: dict[str, torch.Tensor]  # input_ids/attention_mask/labels, [N, ...]
    eval: dict[str, torch.Tensor]
    problems: list[tuple[list[int], str]]  # (prompt ids, gold answer) for generation
    micro_batch_size: int
    accumulation: int
    seed: int
    vocab_size: int
    pad_token_id: int
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    num_labels: int = 0
    max_new_tokens: int = 64

    @property
    def generate_count(self) -> int:
        return len(self.problems)

    def scored_targets(self, labels: torch.Tensor) -> int:
        """Targets a batch's loss averages over: a classifier's one label per sequence, a
        causal LM's labels after the first position (the model shifts them) that are not -100."""
        if self.kind == "classification":
            return int(labels.shape[0])
        return int((labels[..., 1:] != -100).sum())

    def micro_batches(self, step: int, rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """The micro-batches of ``rank`` at optimizer ``step`` (1-based).

        Global batch = the next ``global_batch_size`` indices of a seeded permutation
        per epoch; rank r takes the r-th contiguous share: the same global batches for
        any worker count, so 1-worker and N-worker runs see the same data.
        """
        n = self.train["input_ids"].shape[0]
        global_batch = self.micro_batch_size * self.accumulation * world_size
        start = (step - 1) * global_batch
        indices = torch.cat(
            [self._permutation(epoch, n) for epoch in range(start // n, (start + global_batch - 1) // n + 1)]
        )
        offset = start - (start // n) * n
        mine = indices[offset : offset + global_batch].view(world_size, -1)[rank]
        for chunk in mine.split(self.micro_batch_size):
            yield {k: v[chunk] for k, v in self.train.items()}

    def _permutation(self, epoch: int, n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=generator)

    def eval_batches(self, rank: int, world_size: int) -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
        """This rank's share of the held-out set as ``(batch, counted)``, the same number
        of batches on every rank: under multi-rank ZeRO-3 each forward is collective, so a
        rank with a shorter share runs padding batches (``counted`` False) instead of
        leaving the others waiting for good."""
        n = self.eval["input_ids"].shape[0]
        mine = torch.arange(n)[rank::world_size]
        largest_share = -(-n // world_size)
        batches = -(-largest_share // self.micro_batch_size)
        chunks = [c for c in mine.split(self.micro_batch_size) if len(c)]  # an empty share splits into one empty chunk
        for i in range(batches):
            chunk = chunks[i] if i < len(chunks) else torch.zeros(1, dtype=torch.long)
            yield {k: v[chunk] for k, v in self.eval.items()}, i < len(chunks)

    @torch.no_grad()
    def generate_accuracy(self, model, rank: int, world_size: int, device, synced: bool) -> tuple[float, float]:
        """Greedy answers to this rank's share of the held-out problems: (correct, asked).

        Under multi-rank ZeRO-3 every rank must run the same number of forward passes, so
        ranks pad their share to equal length and generate with ``synced_gpus``.
        """
        from qstudy.data import answers_match, final_answer

        share = self.problems[rank::world_size]
        longest = -(-len(self.problems) // world_size)
        hits = 0.0
        for i in range(longest):
            prompt_ids, gold = share[i] if i < len(share) else (self.problems[0][0], None)
            ids = torch.tensor([prompt_ids], device=device)
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_token_id,
                eos_token_id=self.eos_token_id,
                synced_gpus=synced,
            )
            if gold is None:  # padding so every rank runs as many forward passes
                continue
            text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            hits += float(answers_match(final_answer(text), gold))
        return hits, float(len(share))


def build_trial_data(trial: TrialConfig, cache_dir: str | Path | None = None) -> TrialData:
    """Loads or generates the trial's data and tokenizes it (deterministic per seed).

    Args:
        trial: The trial's config.
        cache_dir: Keep the tokenized GSM8K data here (``qstudy.data.cached``), so the
            next trial with the same data, tokenizer and code reads it instead of
            tokenizing again: the worker passes ``qstudy.data.data_cache_dir()``. None
            tokenizes every time. The classification task is generated, not cached: it
            takes milliseconds.
    """
    data = trial.data
    common = dict(
        micro_batch_size=trial.train.micro_batch_size,
        accumulation=trial.gradient_accumulation_steps,
        seed=trial.seed,
        max_new_tokens=data.max_new_tokens,
    )
    if data.task == "classification":
        from qstudy.data import make_classification_task

        cls = make_classification_task(seed=data.seed, n_train=data.train_examples or 1024, n_eval=data.eval_examples)
        split = lambda part: {"input_ids": part.input_ids, "attention_mask": part.attention_mask, "labels": part.labels}  # noqa: E731
        return TrialData(
            kind="classification",
            tokenizer=None,
            train=split(cls.train),
            eval=split(cls.eval),
            problems=[],
            vocab_size=cls.vocab_size,
            num_labels=cls.num_classes,
            pad_token_id=cls.pad_token_id,
            **common,
        )

    from qstudy.data import cached, find_pad_token_id

    tokenizer = _tokenizer(trial)
    pad = find_pad_token_id(tokenizer)
    if cache_dir is None:
        tokenized = _tokenize(trial, tokenizer, pad)
    else:
        tokenized = cached(cache_dir, _cache_key(trial), lambda: _tokenize(trial, tokenizer, pad))
    return TrialData(
        kind="causal_lm",
        tokenizer=tokenizer,
        train=tokenized["train"],
        eval=tokenized["eval"],
        problems=tokenized["problems"],
        vocab_size=len(tokenizer),
        pad_token_id=pad,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **common,
    )


def _tokenize(trial: TrialConfig, tokenizer, pad: int) -> dict[str, Any]:
    """The GSM8K task's tensors and generation prompts: ``{"train", "eval", "problems"}``."""
    from qstudy.data import collate_batch, encode_gsm8k, encode_prompt, load_gsm8k, synthesize_gsm8k

    data = trial.data
    n_eval = max(data.eval_examples, data.generate_examples)
    if data.task == "synthetic_gsm8k":
        examples = synthesize_gsm8k((data.train_examples or 2048) + n_eval, seed=data.seed)
        train, held_out = examples[:-n_eval], examples[-n_eval:]
    else:
        train = load_gsm8k(data.train_path)
        if data.eval_path is not None:
            held_out = load_gsm8k(data.eval_path)[:n_eval]
        else:  # hold out the tail of the training file
            train, held_out = train[:-n_eval], train[-n_eval:]
        if data.train_examples is not None:
            train = train[: data.train_examples]

    def tensors(examples):
        return collate_batch(
            encode_gsm8k(examples, tokenizer, max_tokens=data.max_tokens), max_tokens=data.max_tokens, pad_token_id=pad
        )

    return {
        "train": tensors(train),
        "eval": tensors(held_out[: data.eval_examples]),
        "problems": [(encode_prompt(ex.question, tokenizer), ex.answer) for ex in held_out[: data.generate_examples]],
    }


def _cache_key(trial: TrialConfig) -> str:
    """What the tokenized data depends on: the data settings and files, the tokenizer's
    files, the code that builds it and the libraries that tokenize."""
    import importlib.metadata
    import sys

    from qstudy.data import file_fingerprint, fingerprint

    data, model_path = trial.data, trial.model.path
    code = [
        sys.modules[name].__file__
        for name in ("qstudy.data._gsm8k", "qstudy.data._synthetic", "qstudy.data._tokenizer")
    ]
    return fingerprint({
        "data": data.model_dump(mode="json"),
        "files": {str(p): file_fingerprint(p) for p in (data.train_path, data.eval_path) if p is not None},
        "tokenizer": None if model_path is None else file_fingerprint(model_path),
        "code": [file_fingerprint(f) for f in [*code, __file__]],
        "versions": {name: importlib.metadata.version(name) for name in ("transformers", "tokenizers", "torch")},
    })  # fmt: skip


def _tokenizer(trial: TrialConfig):
    if trial.model.path is None:
        from qstudy.data import byte_tokenizer

        return byte_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(trial.model.path, local_files_only=True)

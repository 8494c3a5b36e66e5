"""A byte-level tokenizer for tiny offline models, built locally (no download, no training).

Ids 0..255 are the bytes of the UTF-8 text (id = byte value, so any string encodes and
decodes losslessly); 256, 257, 258 are ``<pad>``, ``<bos>``, ``<eos>``. It is an ordinary
`transformers.PreTrainedTokenizerFast`, so a tiny random Llama and a real checkpoint go
through the same calls (``tokenizer(text)``, ``apply_chat_template``, ``save_pretrained``).
Encoding with special tokens prepends ``<bos>``, as Llama's tokenizers do.

It carries a small chat template by default: the paper's GSM8K model is
Llama-3.2-1B-*Instruct*, which is prompted through its chat template, and the smoke
study should run that same code path (`qstudy.data.format_example`) on the tiny model
rather than a branch only tiny models take. The template is kept short because every
byte is a token here::

    <bos><|user|>
    {question}<eos><|assistant|>
    {answer}<eos>

``byte_tokenizer(chat_template=False)`` gives the plain ``Question: ...\\nAnswer: `` format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["BYTE_CHAT_TEMPLATE", "byte_tokenizer"]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

BYTE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
"""Jinja chat template of `byte_tokenizer`: ``<|role|>\\n`` before, ``<eos>`` after each turn."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte (what `ByteLevel` emits)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer(*, chat_template: bool = True) -> PreTrainedTokenizerFast:
    """Builds the byte-level tokenizer (259 ids), identical on every call and machine.

    Args:
        chat_template: Attach `BYTE_CHAT_TEMPLATE` (default) or leave the tokenizer
            without one, so prompts use the plain ``Question: ...\\nAnswer: `` format.

    Returns:
        A `transformers.PreTrainedTokenizerFast` with ``pad_token_id=256``,
        ``bos_token_id=257``, ``eos_token_id=258``; right padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
    # BPE without merges: every byte stays its own token.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([PAD, BOS, EOS])  # ids 256, 257, 258
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
        chat_template=BYTE_CHAT_TEMPLATE if chat_template else None,
    )

"""byte_tokenizer: ids are bytes, specials at 256-258, lossless, deterministic, saveable."""

from transformers import AutoTokenizer

from qstudy.data import BYTE_CHAT_TEMPLATE, byte_tokenizer


def test_ids_are_utf8_bytes_and_specials_follow(byte_tok):
    assert (byte_tok.pad_token_id, byte_tok.bos_token_id, byte_tok.eos_token_id) == (256, 257, 258)
    assert len(byte_tok) == 259
    assert byte_tok("Hé!", add_special_tokens=False)["input_ids"] == [72, 0xC3, 0xA9, 33]
    assert byte_tok("ab")["input_ids"] == [257, 97, 98]  # BOS first, like Llama's tokenizers


def test_round_trip_of_any_text_and_special_tokens_in_text(byte_tok):
    text = "Weng earns $12 an hour.\n\t#### 10 — ünïcödé 🙂 \x00"
    ids = byte_tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert byte_tok.decode(ids) == text
    assert byte_tok("x<eos>", add_special_tokens=False)["input_ids"] == [120, 258]


def test_deterministic_and_survives_save_pretrained(tmp_path, byte_tok):
    again = byte_tokenizer()
    text = "Question: 2+2?\nAnswer: 4"
    assert again(text)["input_ids"] == byte_tok(text)["input_ids"]
    byte_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text)["input_ids"] == byte_tok(text)["input_ids"]
    assert loaded.chat_template == BYTE_CHAT_TEMPLATE and loaded.eos_token_id == 258


def test_chat_template_renders_turns(byte_tok, plain_byte_tok):
    messages = [{"role": "user", "content": "2+2?"}]
    prompt = byte_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<bos><|user|>\n2+2?<eos><|assistant|>\n"
    full = byte_tok.apply_chat_template([*messages, {"role": "assistant", "content": "4"}], tokenize=False)
    assert full == "<bos><|user|>\n2+2?<eos><|assistant|>\n4<eos>"
    assert plain_byte_tok.chat_template is None

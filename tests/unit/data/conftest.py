from pathlib import Path

import pytest

# The real GSM8K splits live next to the repository (../shared/data/gsm8k), never in it.
GSM8K_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gsm8k"


@pytest.fixture
def gsm8k_train_path():
    path = GSM8K_DIR / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"real GSM8K not present at {path}")
    return path


@pytest.fixture(scope="session")
def byte_tok():
    from qstudy.data import byte_tokenizer

    return byte_tokenizer()


@pytest.fixture(scope="session")
def plain_byte_tok():
    from qstudy.data import byte_tokenizer

    return byte_tokenizer(chat_template=False)

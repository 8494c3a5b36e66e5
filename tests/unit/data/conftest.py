import pytest


@pytest.fixture(scope="session")
def byte_tok():
    from qstudy.data import byte_tokenizer

    return byte_tokenizer()


@pytest.fixture(scope="session")
def plain_byte_tok():
    from qstudy.data import byte_tokenizer

    return byte_tokenizer(chat_template=False)

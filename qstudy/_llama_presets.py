"""Published Llama architectures (random init for scaling studies) and the tiny CPU model.

Values from the models' published ``config.json`` files (meta-llama on the HF Hub).
Parameter counts: 1.24B, 3.21B, 8.03B, 70.6B.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LLAMA_PRESETS", "llama_config_kwargs"]


def _llama3(hidden, intermediate, layers, heads, head_dim, tied, factor, vocab=128256) -> dict[str, Any]:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=8,
        head_dim=head_dim,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=128000,
        eos_token_id=128001,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )


LLAMA_PRESETS: dict[str, dict[str, Any]] = {
    # 2 layers of 64 wide: trains a few hundred steps a minute on 2 CPU cores.
    "llama-tiny": dict(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
    "llama-3.2-1b": _llama3(2048, 8192, 16, 32, 64, True, 32.0),
    "llama-3.2-3b": _llama3(3072, 8192, 28, 24, 128, True, 32.0),
    "llama-3.1-8b": _llama3(4096, 14336, 32, 32, 128, False, 8.0),
    "llama-3.1-70b": _llama3(8192, 28672, 80, 64, 128, False, 8.0),
}


def llama_config_kwargs(preset: str) -> dict[str, Any]:
    return dict(LLAMA_PRESETS[preset])

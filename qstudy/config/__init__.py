"""Typed, validated configs: trial settings (and, with the study issue, studies)."""

from qstudy.config._errors import ConfigError
from qstudy.config._loader import format_validation_error, load_yaml, validate
from qstudy.config._trial import (
    DEEPSPEED_PRESETS,
    MODEL_PRESETS,
    DataConfig,
    DeepSpeedConfig,
    ModelConfig,
    OptimizerConfig,
    QuantumConfig,
    ResourcesConfig,
    TrainConfig,
    TrialConfig,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "DeepSpeedConfig",
    "DEEPSPEED_PRESETS",
    "ModelConfig",
    "MODEL_PRESETS",
    "OptimizerConfig",
    "QuantumConfig",
    "ResourcesConfig",
    "TrainConfig",
    "TrialConfig",
    "format_validation_error",
    "load_trial_config",
    "load_yaml",
    "validate",
]


def load_trial_config(path) -> TrialConfig:
    """Loads and validates a trial YAML file (``qstudy train FILE``)."""
    return validate(TrialConfig, load_yaml(path), path)

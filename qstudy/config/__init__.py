"""Typed, validated configs: trial settings and studies (``search_spaces/*.yaml``)."""

from qstudy.config._arms import CONTROL_ARM
from qstudy.config._claims import CLAIM_MEASURES, ClaimConfig, PaperGap
from qstudy.config._errors import ConfigError
from qstudy.config._loader import format_validation_error, load_yaml, validate
from qstudy.config._overrides import apply_overrides
from qstudy.config._sections import (
    OBJECTIVE_METRICS,
    SAMPLERS,
    ObjectiveConfig,
    SamplerConfig,
    SchedulerConfig,
    TrackingConfig,
)
from qstudy.config._space import ParamSpec
from qstudy.config._status import ENDED_STATUSES, OPTUNA_STATUSES, TrialStatus
from qstudy.config._study import StudyConfig, is_study_file, load_study_config
from qstudy.config._trial import (
    DEEPSPEED_PRESETS,
    MODEL_PRESETS,
    DataConfig,
    DeepSpeedConfig,
    ModelConfig,
    OptimizerConfig,
    PathCheck,
    QuantumConfig,
    ResourcesConfig,
    TrainConfig,
    TrialConfig,
    load_trial_config,
)

__all__ = [
    "ENDED_STATUSES",
    "OPTUNA_STATUSES",
    "TrialStatus",
    "CLAIM_MEASURES",
    "CONTROL_ARM",
    "PathCheck",
    "ClaimConfig",
    "PaperGap",
    "ConfigError",
    "DataConfig",
    "DeepSpeedConfig",
    "DEEPSPEED_PRESETS",
    "ModelConfig",
    "MODEL_PRESETS",
    "OBJECTIVE_METRICS",
    "ObjectiveConfig",
    "OptimizerConfig",
    "ParamSpec",
    "QuantumConfig",
    "ResourcesConfig",
    "SAMPLERS",
    "SamplerConfig",
    "SchedulerConfig",
    "StudyConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrialConfig",
    "apply_overrides",
    "format_validation_error",
    "is_study_file",
    "load_study_config",
    "load_trial_config",
    "load_yaml",
    "validate",
]

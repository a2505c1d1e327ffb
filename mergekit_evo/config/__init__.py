"""`EvolveConfig`: the one YAML a user writes, validated once at the boundary.

Everything a run needs is checked before any model is touched: unknown keys, types (`schema.py`), model paths, the
merge method and its parameters against mergekit's own registry (`checks.py`), reading and path resolution
(`load.py`); plugin names are checked against the loaded plugins when the run is built. Every error is one line that
names the field and what would be valid.
"""

from mergekit_evo.config.checks import check_config, check_data_flow, check_method, check_models
from mergekit_evo.config.load import (
    format_validation_error,
    load_config,
    load_yaml_mapping,
    load_yaml_text,
    parse_config,
    read_config,
)
from mergekit_evo.config.schema import (
    AuditConfig,
    BaselineConfig,
    Bounds,
    BudgetConfig,
    DataFlowConfig,
    EstimatorConfig,
    EvolveConfig,
    ExecutorConfig,
    GenomeConfig,
    MergedSource,
    MergerConfig,
    ObserverConfig,
    OptimizerConfig,
    PluginChoice,
    RunOverrides,
    SelectionConfig,
    TaskConfig,
    best_by_rules,
)

__all__ = [
    "AuditConfig",
    "BaselineConfig",
    "Bounds",
    "BudgetConfig",
    "DataFlowConfig",
    "EstimatorConfig",
    "EvolveConfig",
    "ExecutorConfig",
    "GenomeConfig",
    "MergedSource",
    "MergerConfig",
    "ObserverConfig",
    "OptimizerConfig",
    "PluginChoice",
    "RunOverrides",
    "SelectionConfig",
    "TaskConfig",
    "best_by_rules",
    "check_config",
    "check_data_flow",
    "check_method",
    "check_models",
    "format_validation_error",
    "load_config",
    "load_yaml_mapping",
    "load_yaml_text",
    "parse_config",
    "read_config",
]

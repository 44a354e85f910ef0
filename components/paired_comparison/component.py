"""PairedComparison component: the uncertainty of the candidate-vs-baseline difference on the same eval images."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import ModelComparison
from components.paired_comparison import executor
from components.paired_comparison.statistics import DEFAULT_BOOTSTRAP_RESAMPLES


class PairedComparisonSpec(ComponentSpec):
    PARAMETERS = {
        "significance_level": ExecutionParameter(type=float),
        "require_significant": ExecutionParameter(type=int),
        "bootstrap_resamples": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {"comparison": ChannelParameter(type=ModelComparison)}


class PairedComparison(base_component.BaseComponent):
    """Predicts every example of the `eval` split with the candidate (`model`) and the baseline, and writes
    comparison.json: both accuracies, their difference, its paired bootstrap interval (confidence
    1 - significance_level, `bootstrap_resamples` resamples, seeded) and the exact McNemar p-value
    (statistics.py). Custom properties: `p_value`, `difference`, `significant` (p < significance_level).

    `require_significant` does not change the numbers: it records whether BlessingGate requires a
    significant improvement, so that the summary and the report can state the rule.
    """

    SPEC_CLASS = PairedComparisonSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, baseline_model: types.BaseChannel,
                 significance_level: float = 0.05, require_significant: bool = False,
                 bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = 0):
        if not 0.0 < significance_level < 1.0:
            raise ValueError(f"significance_level must be in (0, 1), got {significance_level}")
        if bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be at least 1, got {bootstrap_resamples}")
        super().__init__(PairedComparisonSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            significance_level=float(significance_level),
            require_significant=int(require_significant),
            bootstrap_resamples=bootstrap_resamples,
            seed=seed,
            comparison=types.Channel(type=ModelComparison),
        ))

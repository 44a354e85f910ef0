"""EvaluationReportGen component: spec and component class."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.artifacts import EvaluationReport, IngestReport, ModelComparison
from components.evaluation_report import executor


class EvaluationReportGenSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "candidate_model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model),
        "ingest_report": ChannelParameter(type=IngestReport),
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel, optional=True),
        "production_evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        "production_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "comparison": ChannelParameter(type=ModelComparison, optional=True),
        "pretrained_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {"report": ChannelParameter(type=EvaluationReport)}


class EvaluationReportGen(base_component.BaseComponent):
    """Writes report.html (self-contained: charts embedded, no network) and report_data.json.

    The report states the decision and why (both accuracies, their difference, TFMA's thresholds),
    then per-class metrics and confusion matrices of both models, the pretraining and fine-tuning
    curves from the Trainers' history.json and the ingest counts. Taking the Pusher's output makes
    it run last and say where a blessed model went. With evaluation.compare_to_pushed, `blessing` is
    BlessingGate's, and `production_evaluation` / `production_model` (ProductionEvaluator's and
    ProductionModel's outputs) add the comparison with the model in production. `comparison`
    (PairedComparison's output) adds the uncertainty of the difference: its paired bootstrap interval and
    the exact McNemar p-value. `pretrained_model` (the Pretrainer's output) adds the pretraining curves.
    `examples` (ImageExampleGen's output) adds the train images per class and a grid of each model's
    misclassified images among the first eval examples (both models predict them).
    """

    SPEC_CLASS = EvaluationReportGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        evaluation: types.BaseChannel,
        blessing: types.BaseChannel,
        candidate_model: types.BaseChannel,
        baseline_model: types.BaseChannel,
        ingest_report: types.BaseChannel,
        pushed_model: Optional[types.BaseChannel] = None,
        production_evaluation: Optional[types.BaseChannel] = None,
        production_model: Optional[types.BaseChannel] = None,
        comparison: Optional[types.BaseChannel] = None,
        pretrained_model: Optional[types.BaseChannel] = None,
        examples: Optional[types.BaseChannel] = None,
    ):
        super().__init__(EvaluationReportGenSpec(
            evaluation=evaluation,
            blessing=blessing,
            candidate_model=candidate_model,
            baseline_model=baseline_model,
            ingest_report=ingest_report,
            pushed_model=pushed_model,
            production_evaluation=production_evaluation,
            production_model=production_model,
            comparison=comparison,
            pretrained_model=pretrained_model,
            examples=examples,
            report=types.Channel(type=EvaluationReport),
        ))

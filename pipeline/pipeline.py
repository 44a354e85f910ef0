"""The one pipeline factory, used by the local runner and the Kubeflow runner alike.

ImageExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> AnomalyGate
  -> Pretrainer (self-supervised pretraining of the encoder, a Trainer with role "pretrainer")
  -> candidate Trainer (fine-tunes the Pretrainer's encoder: its base_model) and baseline Trainer
     (the same architecture from random weights, supervised)
  -> Evaluator (candidate vs baseline, TFMA) and PairedComparison (the uncertainty of the difference:
     paired bootstrap interval, exact McNemar p-value) -> Pusher (only when blessed)
  -> EvaluationReportGen (report.html: the decision, both models' metrics, training curves, data counts)

With `evaluation.compare_to_pushed`, ProductionModel (the latest pushed model) -> ProductionEvaluator
(candidate vs that model) sit before the Pusher, and with it or `evaluation.require_significant`
BlessingGate (blessed only when every Evaluator blessed and, with require_significant, the candidate is
significantly better) gives the Pusher its blessing.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
from typing import List, Optional, Union

from tfx import v1 as tfx
from tfx.orchestration import data_types

from components.anomaly_gate.component import AnomalyGate
from components.blessing_gate.component import BlessingGate
from components.evaluation_report.component import EvaluationReportGen
from components.image_example_gen.component import ImageExampleGen
from components.paired_comparison.component import PairedComparison
from components.production_model.component import ProductionModel
from pipeline.config import Config
from pipeline.evaluation import build_eval_config, build_production_eval_config
from trainer import contract
from trainer.hparams import ConfigError, TrainingConfig

TRAINER_RUN_FN = "trainer.run.run_fn"
COMPONENT_IDS = (
    contract.IMAGE_EXAMPLE_GEN, contract.STATISTICS_GEN, contract.SCHEMA_GEN, contract.EXAMPLE_VALIDATOR,
    contract.ANOMALY_GATE, contract.PRETRAINER, contract.CANDIDATE_TRAINER, contract.BASELINE_TRAINER,
    contract.EVALUATOR, contract.PAIRED_COMPARISON, contract.PUSHER, contract.EVALUATION_REPORT_GEN,
)
PRODUCTION_COMPONENT_IDS = (contract.PRODUCTION_MODEL, contract.PRODUCTION_EVALUATOR)
GATE_COMPONENT_ID = contract.BLESSING_GATE


# training: settings of the Trainer module in another ExampleGen's pipeline (docs/own_pipeline.md); in this
# pipeline ImageExampleGen fixes them: the features `image` and `label`, class_names.json, the `unlabeled` split.
OWN_PIPELINE_TRAINING_KEYS = ("image_feature", "label_feature", "class_names", "unlabeled_splits")


def check_image_example_gen_training(training: TrainingConfig) -> None:
    """Raises ConfigError naming each OWN_PIPELINE_TRAINING_KEYS setting that is not its default."""
    default = TrainingConfig()
    changed = [key for key in OWN_PIPELINE_TRAINING_KEYS if getattr(training, key) != getattr(default, key)]
    if changed:
        raise ConfigError("\n".join(
            f"config key 'training.{key}': is for selfsup's Trainer module in another TFX pipeline "
            "(docs/own_pipeline.md); selfsup's own pipeline reads ImageExampleGen's examples, which fix it: "
            f"leave it unset (default {getattr(default, key)!r})" for key in changed))


def needs_blessing_gate(config: Config) -> bool:
    """The Pusher's blessing combines more than the Evaluator's: BlessingGate sits before it."""
    return config.evaluation.compare_to_pushed or config.evaluation.require_significant


def component_ids(config: Config) -> tuple:
    """The ids of the components create_pipeline builds for `config`."""
    return (COMPONENT_IDS + (PRODUCTION_COMPONENT_IDS if config.evaluation.compare_to_pushed else ())
            + ((GATE_COMPONENT_ID,) if needs_blessing_gate(config) else ()))


def trainer_code_fingerprint() -> str:
    """SHA-256 of the trainer package's sources.

    TFX keys the Trainer's cache on the module file only when one is passed; with a dotted
    `run_fn` path a code change would reuse a stale cached model. Putting this fingerprint in
    custom_config makes any trainer code change re-run both Trainers.
    """
    spec = importlib.util.find_spec("trainer")
    digest = hashlib.sha256()
    for folder in spec.submodule_search_locations:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(name.encode() + b"\0" + handle.read())
    return digest.hexdigest()


def data_config_json(config: Config) -> str:
    """The `data:` section as ImageExampleGen's JSON parameter (TFDS splits resolved)."""
    data = dataclasses.asdict(config.data)
    data["tfds_splits"] = config.data.resolved_tfds_splits()
    return json.dumps(data, sort_keys=True)


def create_pipeline(
    *,
    config: Config,
    pipeline_root: str,
    serving_dir: str,
    metadata_connection_config=None,
    data_path: Optional[Union[str, data_types.RuntimeParameter]] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    trainer_custom_config: Optional[dict] = None,
) -> tfx.dsl.Pipeline:
    """Builds the selfsup pipeline.

    Args:
      config: the validated configuration.
      pipeline_root: where every artifact is written (a local folder, gs://..., s3://...).
      serving_dir: where the Pusher copies a blessed model.
      metadata_connection_config: MLMD connection (SQLite locally; None on Kubeflow).
      data_path: overrides config.data.path (a RuntimeParameter on Kubeflow).
      beam_pipeline_args: Beam options for the Beam components (default: config.pipeline.beam_args).
      trainer_custom_config: extra keys for both Trainers' custom_config (e.g. distribution settings).

    Returns:
      A tfx.dsl.Pipeline.

    Raises:
      ConfigError: a `training:` setting only another pipeline's Trainer reads (OWN_PIPELINE_TRAINING_KEYS).
    """
    check_image_example_gen_training(config.training)
    example_gen = ImageExampleGen(data_config=data_config_json(config), data_path=data_path,
                                  min_eval_per_class=config.evaluation.min_eval_per_class
                                  ).with_id(contract.IMAGE_EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
        contract.STATISTICS_GEN)
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True).with_id(contract.SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(contract.EXAMPLE_VALIDATOR)
    gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                       schema=schema_gen.outputs["schema"]).with_id(contract.ANOMALY_GATE)

    extra = dict(trainer_code_fingerprint=trainer_code_fingerprint(), **(trainer_custom_config or {}))
    # The Pretrainer's custom_config leaves out the fine-tuning-only settings, so that changing those (or
    # the label budget) reuses the cached encoder; the candidate fine-tunes it (base_model).
    pretrainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["validated_schema"],
        train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL_SPLIT]),
        custom_config=dict(config.training.pretraining_dict(), **extra, role=contract.PRETRAINER_ROLE),
    ).with_id(contract.PRETRAINER)
    trainers = {}
    for role in (contract.CANDIDATE_ROLE, contract.BASELINE_ROLE):
        trainers[role] = tfx.components.Trainer(
            run_fn=TRAINER_RUN_FN,
            examples=example_gen.outputs["examples"],
            schema=gate.outputs["validated_schema"],
            base_model=pretrainer.outputs["model"] if role == contract.CANDIDATE_ROLE else None,
            train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL_SPLIT]),
            # The baseline's custom_config holds only what it reads, so that it stays cached when the method,
            # a pretraining setting or a candidate-only setting changes.
            custom_config=dict(config.training.to_dict() if role == contract.CANDIDATE_ROLE
                               else config.training.baseline_dict(), **extra, role=role),
        ).with_id(contract.TRAINER_OF_ROLE[role])
    candidate, baseline = trainers[contract.CANDIDATE_ROLE], trainers[contract.BASELINE_ROLE]

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=candidate.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=build_eval_config(config.evaluation),
        example_splits=[contract.EVAL_SPLIT],
    ).with_id(contract.EVALUATOR)
    comparison = PairedComparison(
        examples=example_gen.outputs["examples"],
        model=candidate.outputs["model"],
        baseline_model=baseline.outputs["model"],
        significance_level=config.evaluation.significance_level,
        require_significant=config.evaluation.require_significant,
    ).with_id(contract.PAIRED_COMPARISON)
    components = [example_gen, statistics_gen, schema_gen, example_validator, gate, pretrainer,
                  candidate, baseline, evaluator, comparison]
    blessing, production_evaluation, production_model, production_blessing = (
        evaluator.outputs["blessing"], None, None, None)
    if config.evaluation.compare_to_pushed:
        production = ProductionModel(candidate_model=candidate.outputs["model"],
                                     baseline_model=baseline.outputs["model"],
                                     serving_dir=serving_dir).with_id(contract.PRODUCTION_MODEL)
        production_evaluator = tfx.components.Evaluator(
            examples=example_gen.outputs["examples"],
            model=candidate.outputs["model"],
            baseline_model=production.outputs["model"],
            eval_config=build_production_eval_config(),
            example_splits=[contract.EVAL_SPLIT],
        ).with_id(contract.PRODUCTION_EVALUATOR)
        components += [production, production_evaluator]
        production_blessing = production_evaluator.outputs["blessing"]
        production_evaluation = production_evaluator.outputs["evaluation"]
        production_model = production.outputs["model"]
    if needs_blessing_gate(config):
        blessing_gate = BlessingGate(
            model=candidate.outputs["model"],
            baseline_blessing=evaluator.outputs["blessing"],
            production_blessing=production_blessing,
            comparison=comparison.outputs["comparison"] if config.evaluation.require_significant else None,
        ).with_id(GATE_COMPONENT_ID)
        components.append(blessing_gate)
        blessing = blessing_gate.outputs["blessing"]
    pusher = tfx.components.Pusher(
        model=candidate.outputs["model"],
        model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    ).with_id(contract.PUSHER)
    report = EvaluationReportGen(
        evaluation=evaluator.outputs["evaluation"],
        blessing=blessing,
        candidate_model=candidate.outputs["model"],
        baseline_model=baseline.outputs["model"],
        ingest_report=example_gen.outputs["report"],
        pushed_model=pusher.outputs["pushed_model"],
        production_evaluation=production_evaluation,
        production_model=production_model,
        comparison=comparison.outputs["comparison"],
        pretrained_model=pretrainer.outputs["model"],
        examples=example_gen.outputs["examples"],
    ).with_id(contract.EVALUATION_REPORT_GEN)
    components += [pusher, report]
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.pipeline.beam_args,
    )

"""selfsup's parts in your own TFX pipeline (docs/own_pipeline.md walks through this file).

Two pipelines a TFX user could write, both training with selfsup's Trainer module (`trainer.run.run_fn`) in
its three roles (Pretrainer, candidate, baseline):

- `create_image_pipeline`: selfsup's ImageExampleGen reads an image folder -> StatisticsGen -> SchemaGen ->
  ExampleValidator -> AnomalyGate -> the three Trainers -> Evaluator -> Pusher -> EvaluationReportGen;
- `create_tfrecord_pipeline`: TFX's ImportExampleGen reads TFRecords of your own tf.Examples (an encoded
  image and an int64 label under any feature keys) -> the same, up to the Pusher.

Each runs with TFX's LocalDagRunner:

    python -m pipeline.examples.own_pipeline images --data DIR --output OUT [--config FILE]
    python -m pipeline.examples.own_pipeline tfrecords --data DIR --output OUT [--config FILE]

DIR is selfsup's image folder (unlabeled/, labeled/<class>/, test/<class>/), or for `tfrecords` a folder of
TFRecord files; FILE's `training:` and `evaluation:` sections are used (the other sections are selfsup's
own pipeline's). tests/test_own_pipeline.py runs both on the digits.
"""

import argparse
import os
from typing import Dict, List, Optional, Tuple

from tfx import v1 as tfx

from components.anomaly_gate.component import AnomalyGate
from components.evaluation_report.component import EvaluationReportGen
from components.image_example_gen.component import ImageExampleGen
from pipeline.config import Config, DataConfig, EvaluationConfig, PipelineConfig, load_config
from pipeline.evaluation import build_eval_config
from pipeline.pipeline import TRAINER_RUN_FN, data_config_json, trainer_code_fingerprint
from trainer import contract
from trainer.hparams import TrainingConfig

# The Beam options of the data components (selfsup's default: the DirectRunner in this process).
BEAM_ARGS = PipelineConfig().beam_args


def validated_schema(examples: tfx.dsl.Channel) -> Tuple[list, tfx.dsl.Channel]:
    """StatisticsGen -> SchemaGen -> ExampleValidator -> AnomalyGate: the components, and AnomalyGate's schema,
    which exists only when the examples have no anomalies (stock TFX only records them)."""
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"], schema=schema_gen.outputs["schema"])
    return [statistics_gen, schema_gen, example_validator, gate], gate.outputs["validated_schema"]


def selfsup_trainers(examples: tfx.dsl.Channel, schema: tfx.dsl.Channel, training: TrainingConfig,
                     train_splits: Tuple[str, ...] = (contract.TRAIN_SPLIT,),
                     eval_splits: Tuple[str, ...] = (contract.EVAL_SPLIT,)) -> Dict[str, tfx.components.Trainer]:
    """selfsup's Trainer module in its three roles; `role` and the settings travel in custom_config.

    - "pretrainer": self-supervised pretraining of the encoder on the unlabeled and train splits. Its
      custom_config holds only what pretraining reads, so fine-tuning changes reuse the cached encoder.
    - "candidate": the Pretrainer's encoder (its `base_model`), fine-tuned on the train labels.
    - "baseline": the same architecture from random weights on the same labels. Its custom_config holds only
      what it reads, so a change of method or pretraining setting reuses the cached baseline.
    TFX caches a Trainer named by `run_fn` whatever its code; `trainer_code_fingerprint` in custom_config makes
    a change to selfsup's trainer/ re-run the three.
    """
    fingerprint = trainer_code_fingerprint()

    def trainer(role: str, custom_config: dict, base_model: Optional[tfx.dsl.Channel] = None) -> tfx.components.Trainer:
        return tfx.components.Trainer(
            run_fn=TRAINER_RUN_FN,
            examples=examples,
            schema=schema,
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(splits=list(train_splits)),
            eval_args=tfx.proto.EvalArgs(splits=list(eval_splits)),
            custom_config=dict(custom_config, role=role, trainer_code_fingerprint=fingerprint),
        ).with_id(contract.TRAINER_OF_ROLE[role])

    pretrainer = trainer(contract.PRETRAINER_ROLE, training.pretraining_dict())
    return {
        contract.PRETRAINER_ROLE: pretrainer,
        contract.CANDIDATE_ROLE: trainer(contract.CANDIDATE_ROLE, training.to_dict(),
                                         base_model=pretrainer.outputs["model"]),
        contract.BASELINE_ROLE: trainer(contract.BASELINE_ROLE, training.baseline_dict()),
    }


def evaluator_and_pusher(examples: tfx.dsl.Channel, trainers: Dict[str, tfx.components.Trainer],
                         training: TrainingConfig, evaluation: EvaluationConfig, serving_dir: str,
                         eval_splits: Tuple[str, ...] = (contract.EVAL_SPLIT,)) -> Tuple[tfx.components.Evaluator,
                                                                            tfx.components.Pusher]:
    """TFMA compares the candidate with the baseline (selfsup's blessing rule, `evaluation:`); the Pusher
    copies the candidate to `serving_dir` only when it is blessed."""
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainers[contract.CANDIDATE_ROLE].outputs["model"],
        baseline_model=trainers[contract.BASELINE_ROLE].outputs["model"],
        eval_config=build_eval_config(evaluation, label_key=training.label_feature),
        example_splits=list(eval_splits),
    )
    pusher = tfx.components.Pusher(
        model=trainers[contract.CANDIDATE_ROLE].outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)),
    )
    return evaluator, pusher


def create_image_pipeline(*, data_dir: str, pipeline_root: str, serving_dir: str, metadata_path: str,
                          training: TrainingConfig, evaluation: EvaluationConfig,
                          pipeline_name: str = "selfsup-own-images") -> tfx.dsl.Pipeline:
    """ImageExampleGen -> data validation -> the three Trainers -> Evaluator -> Pusher -> EvaluationReportGen.

    ImageExampleGen writes the unlabeled, train and eval splits with the features `image`, `label` and `path`,
    and class_names.json and ingest_report.json beside them: the Trainers read those as they are (`training`
    keeps its default feature keys) and EvaluationReportGen reads the ingest report.
    """
    example_gen = ImageExampleGen(data_config=data_config_json(Config(data=DataConfig(source="folder", path=data_dir))),
                                  min_eval_per_class=evaluation.min_eval_per_class)
    examples = example_gen.outputs["examples"]
    validation, schema = validated_schema(examples)
    trainers = selfsup_trainers(examples, schema, training)
    evaluator, pusher = evaluator_and_pusher(examples, trainers, training, evaluation, serving_dir)
    report = EvaluationReportGen(
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        candidate_model=trainers[contract.CANDIDATE_ROLE].outputs["model"],
        baseline_model=trainers[contract.BASELINE_ROLE].outputs["model"],
        ingest_report=example_gen.outputs["report"],
        pushed_model=pusher.outputs["pushed_model"],
        pretrained_model=trainers[contract.PRETRAINER_ROLE].outputs["model"],
        examples=examples,
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, *validation, *trainers.values(), evaluator, pusher, report],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=BEAM_ARGS,
    )


def create_tfrecord_pipeline(*, tfrecord_dir: str, pipeline_root: str, serving_dir: str, metadata_path: str,
                             training: TrainingConfig, evaluation: EvaluationConfig,
                             pipeline_name: str = "selfsup-own-tfrecords") -> tfx.dsl.Pipeline:
    """ImportExampleGen -> data validation -> the three Trainers -> Evaluator -> Pusher.

    ImportExampleGen reads every TFRecord file in `tfrecord_dir` and splits the examples 2:1 into `train` and
    `eval` by a hash. There is no `unlabeled` split, so pretraining reads the train split (without its labels);
    `training.image_feature` and `training.label_feature` name the features; the class names are
    `training.class_names`, or "0" .. "N-1". EvaluationReportGen needs ImageExampleGen's ingest report, so this
    pipeline ends with the Pusher.
    """
    example_gen = tfx.components.ImportExampleGen(input_base=tfrecord_dir)
    examples = example_gen.outputs["examples"]
    validation, schema = validated_schema(examples)
    trainers = selfsup_trainers(examples, schema, training)
    evaluator, pusher = evaluator_and_pusher(examples, trainers, training, evaluation, serving_dir)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, *validation, *trainers.values(), evaluator, pusher],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=BEAM_ARGS,
    )


def output_paths(output_dir: str) -> Dict[str, str]:
    """Where a run of either pipeline writes: artifacts, MLMD and the pushed models, all under `output_dir`."""
    output_dir = os.path.abspath(output_dir)
    return {"pipeline_root": os.path.join(output_dir, "tfx"), "serving_dir": os.path.join(output_dir, "serving"),
            "metadata_path": os.path.join(output_dir, "metadata.sqlite")}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples_from", choices=("images", "tfrecords"))
    parser.add_argument("--data", required=True, help="the image folder, or the folder of TFRecord files")
    parser.add_argument("--output", required=True, help="pipeline root, MLMD and pushed models go here")
    parser.add_argument("--config", help="a selfsup config file; its training: and evaluation: sections are used")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else Config()
    settings = dict(output_paths(args.output), training=config.training, evaluation=config.evaluation)
    if args.examples_from == "images":
        pipeline = create_image_pipeline(data_dir=os.path.abspath(args.data), **settings)
    else:
        pipeline = create_tfrecord_pipeline(tfrecord_dir=os.path.abspath(args.data), **settings)
    tfx.orchestration.LocalDagRunner().run(pipeline)


if __name__ == "__main__":
    main()

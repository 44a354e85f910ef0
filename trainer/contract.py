"""The names selfsup's packages share: one definition each, imported by trainer/, components/, pipeline/,
kubeflow/ and bench/ alike.

A name belongs here when two packages must agree on it: a tf.Example feature key, a split, a file one step
writes and another reads, a Trainer role, a component id, a serving signature or output, a history phase or
metric key, an MLMD property. A name only one package uses stays in that package.

This module imports nothing (not even TensorFlow), and it lives in trainer/ because trainer/ is the bottom of
selfsup's import graph: the Trainer module runs inside TFX's Trainer executor and imports no other selfsup
package (tests/test_import_layers.py checks the directions, tests/test_contract.py that the literals below are
written nowhere else).
"""

# --- tf.Example features (ImageExampleGen writes them; the Trainers, the Evaluator and the report read them)
IMAGE_FEATURE = "image"  # the encoded image bytes
LABEL_FEATURE = "label"  # the class index, UNLABELED_LABEL in the unlabeled split
PATH_FEATURE = "path"  # where the image came from (a file path, tfds:name/split#index, ...)
UNLABELED_LABEL = -1

# --- splits of the Examples artifact
TRAIN_SPLIT, EVAL_SPLIT, UNLABELED_SPLIT = "train", "eval", "unlabeled"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, UNLABELED_SPLIT)
SPLIT_FOLDER_PREFIX = "Split-"  # TFX's folder of a split inside an Examples artifact

# --- files one step writes and another reads
CLASS_NAMES_FILE = "class_names.json"  # beside the splits and in the exported model: class i at index i
INGEST_REPORT_FILE = "ingest_report.json"  # ImageExampleGen's counts (IngestReport and beside the splits)
HISTORY_FILE = "history.json"  # in every Trainer's Model folder: curves, timings, settings
HISTORY_SETTINGS_KEY = "config"  # the key of a Trainer's settings in its history.json
HISTORY_CURVES_KEY = "history"  # history.json: the curves, {"<phase>/<metric>": [one value per epoch]}
HISTORY_TIMINGS_KEY = "timings"  # history.json: seconds per part of the Trainer's work
HISTORY_LABELED_TRAIN_IMAGES_KEY = "labeled_train_images"  # history.json: the labeled images a classifier saw
AUGMENTED_VIEWS_FILE = "augmented_views.png"  # the Pretrainer's images beside their two pretraining views
SUMMARY_FILE = "summary.json"  # `selfsup run`'s result, in --output
REPORT_FILE = "report.html"  # EvaluationReportGen's page

# --- Trainer roles (the Trainers' custom_config["role"])
PRETRAINER_ROLE, CANDIDATE_ROLE, BASELINE_ROLE = "pretrainer", "candidate", "baseline"
ROLES = (PRETRAINER_ROLE, CANDIDATE_ROLE, BASELINE_ROLE)

# --- component ids of the pipeline (pipeline/pipeline.py builds them; the runners, summary and report read them)
IMAGE_EXAMPLE_GEN = "ImageExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALY_GATE = "AnomalyGate"
PRETRAINER = "Pretrainer"
CANDIDATE_TRAINER = "CandidateTrainer"
BASELINE_TRAINER = "BaselineTrainer"
EVALUATOR = "Evaluator"
PAIRED_COMPARISON = "PairedComparison"
PUSHER = "Pusher"
EVALUATION_REPORT_GEN = "EvaluationReportGen"
PRODUCTION_MODEL = "ProductionModel"
PRODUCTION_EVALUATOR = "ProductionEvaluator"
BLESSING_GATE = "BlessingGate"
TRAINER_OF_ROLE = {PRETRAINER_ROLE: PRETRAINER, CANDIDATE_ROLE: CANDIDATE_TRAINER, BASELINE_ROLE: BASELINE_TRAINER}

# --- the exported classifier (trainer/export.py writes it; the Evaluator, the Pusher's users and TFLite read it)
SERVING_SIGNATURE = "serving_default"  # serialized tf.Examples in
SERVING_IMAGES_SIGNATURE = "serving_images"  # decoded images in
PROBABILITIES_OUTPUT = "probabilities"  # what TFMA evaluates (the prediction key)
CLASS_IDS_OUTPUT = "class_ids"
CLASSES_OUTPUT = "classes"

# --- history.json: phase prefixes of the metric keys ("<phase>/<metric>")
PRETRAIN_PHASE = "pretrain"
LINEAR_PHASE = "linear"  # candidate: the linear head on the frozen encoder
FINETUNE_PHASE = "finetune"  # candidate: the whole network
FIXMATCH_PHASE = "fixmatch"  # candidate: FixMatch on the unlabeled images
DISTILL_PHASE = "distill"  # candidate: distillation on the unlabeled images
SUPERVISED_PHASE = "supervised"  # baseline: the whole network from random weights
MATCHED_PHASE = "matched"  # baseline: as many labeled batches as the candidate's semi-supervised stages
SEMI_SUPERVISED_PHASES = (FIXMATCH_PHASE, DISTILL_PHASE)


def history_key(phase: str, metric: str) -> str:
    """The key of `metric` of `phase` in history.json: 'pretrain/knn_accuracy'."""
    return f"{phase}/{metric}"


# --- ingestion (components/image_example_gen writes them; the runners, the summary and the tests read them)
INPUT_FINGERPRINT_PROPERTY = "input_fingerprint"  # ImageExampleGen's execution and Examples artifact property


# --- results (the evaluation report and summary.json read these MLMD properties and metrics)
PUSHED_PROPERTY = "pushed"  # TFX Pusher's PushedModel: 1 when it copied the model
PUSHED_DESTINATION_PROPERTY = "pushed_destination"  # TFX Pusher's PushedModel: where it copied the model
PRODUCTION_SOURCE_PROPERTY = "source"  # ProductionModel's Model: what it copied, one of the two below
PRODUCTION_FROM_PUSHED, PRODUCTION_FROM_BASELINE = "pushed", "supervised_baseline"
PRODUCTION_MODEL_PROPERTY = "production_model"  # ProductionModel's Model: the folder it copied
ACCURACY_METRIC = "sparse_categorical_accuracy"  # TFMA's name of the blessing metric (pipeline/evaluation.py)

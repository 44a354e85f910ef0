"""Training hyperparameters: the `training:` section of the selfsup config.

This module is plain Python (no TensorFlow, no TFX) so that the pipeline can
validate the training settings when it is built, and the Trainer can rebuild
the same object from `fn_args.custom_config` inside its executor.
"""

import dataclasses
from typing import Dict, List, Literal, Optional, get_args

from trainer.contract import IMAGE_FEATURE, LABEL_FEATURE

# The choices of the `training.*` settings that have a fixed list: each list is written once, as the Literal type
# of its TrainingConfig field, and the tuple (what __post_init__ checks, what argparse `choices=` and the docs
# take) is derived from it.
Method = Literal["simclr", "simsiam", "byol"]
Encoder = Literal["small_cnn", "resnet18_cifar", "resnet10_cifar", "resnet50", "efficientnet_b0", "sequence_cnn"]
Optimizer = Literal["adam", "adamw", "sgd", "lars"]
Strategy = Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"]
# Keras dtype policies of `training.precision`; `auto` is resolved per machine by trainer/precision.py.
Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]

METHODS = get_args(Method)
ENCODERS = get_args(Encoder)
OPTIMIZERS = get_args(Optimizer)
STRATEGIES = get_args(Strategy)
PRECISIONS = get_args(Precision)

# The smallest image_size each encoder accepts; 8 for the others.
_MIN_ENCODER_IMAGE_SIZE = {"small_cnn": 32, "resnet50": 32, "efficientnet_b0": 32}


def min_image_size(encoder: str) -> int:
    return _MIN_ENCODER_IMAGE_SIZE.get(encoder, 8)


# Augmentation presets (SimCLR-style "strong" for pretraining, "weak" for fine-tuning).
# `training.pretrain_augment` / `training.finetune_augment` override single keys.
AUGMENT_PRESETS: Dict[str, Dict[str, float]] = {
    "strong": {
        "crop_scale_min": 0.2,       # random resized crop: area fraction range
        "crop_scale_max": 1.0,
        "flip_probability": 0.5,     # horizontal flip
        "jitter_probability": 0.8,   # colour jitter applied with this probability
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.4,
        "hue": 0.1,
        "grayscale_probability": 0.2,
        "blur_probability": 0.0,     # Gaussian blur (SimCLR uses 0.5 on ImageNet-size images)
        "blur_sigma_max": 2.0,
        "rotate90_probability": 0.0,
    },
    "weak": {
        "crop_scale_min": 0.8,
        "crop_scale_max": 1.0,
        "flip_probability": 0.5,
        "jitter_probability": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
        "saturation": 0.0,
        "hue": 0.0,
        "grayscale_probability": 0.0,
        "blur_probability": 0.0,
        "blur_sigma_max": 2.0,
        "rotate90_probability": 0.0,
    },
}


def augment_settings(preset: str, overrides: Dict[str, float]) -> Dict[str, float]:
    """A preset with `overrides` applied; raises ConfigError for an unknown key."""
    settings = dict(AUGMENT_PRESETS[preset])
    for key, value in overrides.items():
        require(key in settings, f"augment.{key}", f"unknown augmentation setting; known: {sorted(settings)}")
        settings[key] = float(value)
    return settings


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or impossible."""


def require(condition: bool, key: str, message: str) -> None:
    """Raises ConfigError naming `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config key '{key}': {message}")


@dataclasses.dataclass
class TrainingConfig:
    """Hyperparameters of both Trainers (candidate and supervised baseline).

    Every default lives here; `pipeline.config` loads and type-checks the YAML
    section, and the values are checked again here (ranges, choices).
    """

    method: Method = "simclr"
    encoder: Encoder = "small_cnn"
    encoder_width: int = 128
    encoder_weights: Optional[str] = None
    image_size: int = 32
    sequence_pool_size: int = 1

    projection_dim: int = 128
    projection_hidden_dim: int = 128
    projection_layers: int = 2
    projection_batch_norm: bool = True
    predictor_hidden_dim: int = 64
    sync_batch_norm: bool = False
    temperature: float = 0.1
    byol_base_ema: float = 0.99

    batch_size: int = 256
    pretrain_epochs: int = 20
    pretrain_learning_rate: float = 1e-3
    optimizer: Optimizer = "adam"
    weight_decay: float = 1e-4
    warmup_epochs: int = 1

    pretrain_augment: Dict[str, float] = dataclasses.field(default_factory=dict)
    finetune_augment: Dict[str, float] = dataclasses.field(default_factory=dict)
    # Compile the augmentation of the pretraining, FixMatch and distillation steps with XLA, on its own
    # (trainer/augment.py view_maker).
    augment_jit_compile: bool = True
    # Decoded images kept after a dataset's first pass (trainer/data.py DecodeCache): in memory for a dataset whose
    # decoded images fit this many MB, else in a file under decode_cache_dir when set, else decoded every epoch.
    # Where they are kept does not change what is trained on.
    decode_cache_mb: int = 1024
    decode_cache_dir: Optional[str] = None

    # What the Trainers read (trainer/examples.py): the feature keys (by default those selfsup's ImageExampleGen
    # writes, trainer/contract.py) of the encoded image and of the integer label;
    # the class names when the examples have no class_names.json beside their splits (ImportExampleGen's);
    # the splits pretrained on without labels besides the train splits (None: `unlabeled` when there is one).
    image_feature: str = IMAGE_FEATURE
    label_feature: str = LABEL_FEATURE
    class_names: Optional[List[str]] = None
    unlabeled_splits: Optional[List[str]] = None

    # Pretraining starts from this earlier encoder (a Pretrainer Model artifact or an exported encoder
    # folder, see trainer/encoder_artifact.py) instead of random weights.
    init_encoder: Optional[str] = None

    finetune_batch_size: int = 64
    # The label budget: at most this many train labels per class, chosen by a hash of each image's path, or of
    # its bytes when it has no path (trainer/data.py label_budget_paths); both Trainers use the same subset,
    # pretraining sees every image.
    labels_per_class: Optional[int] = None
    linear_epochs: int = 10
    linear_learning_rate: float = 1e-2
    finetune_epochs: int = 10
    finetune_learning_rate: float = 1e-3
    baseline_learning_rate: float = 1e-3

    # Distillation of the fine-tuned candidate into a student on the unlabeled images (trainer/distill.py).
    distill_epochs: int = 0
    distill_temperature: float = 1.0
    distill_learning_rate: float = 1e-3
    distill_labeled_weight: float = 0.5

    # Semi-supervised fine-tuning with confident pseudo-labels on the unlabeled images (trainer/fixmatch.py),
    # after fine-tuning and before distillation.
    # On cifar10-ssl (docs/benchmarks.md sections 7, 8) 10 epochs at threshold 0.7 and weight 2 gave the candidate
    # +3.2 points (0.5385 -> 0.5705); threshold 0.8 or weight 1 gave +1.9 to +2.2, weight 4 +0.5; 20 epochs 0.5920,
    # 30 epochs 0.5925 (the classifier stops improving near 20).
    fixmatch_epochs: int = 20
    fixmatch_threshold: float = 0.7
    fixmatch_unlabeled_weight: float = 2.0
    fixmatch_learning_rate: float = 1e-3
    fixmatch_augment: Dict[str, float] = dataclasses.field(default_factory=dict)

    knn_k: int = 20
    monitor_every_epochs: int = 1
    collapse_std_threshold: float = 0.01
    seed: int = 42
    strategy: Strategy = "auto"
    tpu_address: Optional[str] = None
    # `auto`: the precision the hardware is fast at (trainer/precision.py). mixed_bfloat16 was measured within
    # 0.4 points of float32 on cifar10-ssl (docs/benchmarks.md section 7).
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        prefix = "training."
        for key, choices in (("method", METHODS), ("encoder", ENCODERS), ("optimizer", OPTIMIZERS),
                             ("strategy", STRATEGIES), ("precision", PRECISIONS)):
            value = getattr(self, key)
            require(value in choices, prefix + key, f"must be one of {choices}, got {value!r}")
        for key in (
            "encoder_width", "image_size", "sequence_pool_size", "projection_dim",
            "projection_hidden_dim", "projection_layers", "predictor_hidden_dim",
            "batch_size", "finetune_batch_size", "knn_k", "monitor_every_epochs",
        ):
            value = getattr(self, key)
            require(value > 0, prefix + key, f"must be a positive integer, got {value}")
        for key in ("pretrain_epochs", "linear_epochs", "finetune_epochs", "warmup_epochs", "distill_epochs",
                    "fixmatch_epochs", "decode_cache_mb"):
            value = getattr(self, key)
            require(value >= 0, prefix + key, f"must be zero or more, got {value}")
        require(
            self.linear_epochs + self.finetune_epochs > 0,
            prefix + "finetune_epochs",
            "linear_epochs + finetune_epochs must be at least 1 so that a classifier is trained",
        )
        for key in ("pretrain_learning_rate", "linear_learning_rate", "finetune_learning_rate",
                    "baseline_learning_rate", "temperature", "distill_temperature", "distill_learning_rate",
                    "fixmatch_learning_rate"):
            value = getattr(self, key)
            require(value > 0, prefix + key, f"must be greater than 0, got {value}")
        require(self.decode_cache_dir is None or bool(self.decode_cache_dir.strip()), prefix + "decode_cache_dir",
                "must not be empty")
        require(self.weight_decay >= 0, prefix + "weight_decay", f"must be zero or more, got {self.weight_decay}")
        require(self.labels_per_class is None or self.labels_per_class > 0, prefix + "labels_per_class",
                f"must be positive, got {self.labels_per_class}")
        require(self.init_encoder is None or bool(self.init_encoder.strip()), prefix + "init_encoder",
                "must not be empty")
        for key in ("image_feature", "label_feature"):
            require(bool(getattr(self, key).strip()), prefix + key, "must not be empty")
        require(self.image_feature != self.label_feature, prefix + "label_feature",
                f"must differ from training.image_feature, both are {self.label_feature!r}")
        if self.class_names is not None:
            require(len(self.class_names) >= 2, prefix + "class_names",
                    f"needs at least two classes, got {self.class_names}")
            require(len(set(self.class_names)) == len(self.class_names), prefix + "class_names",
                    f"has duplicate names: {self.class_names}")
        if self.unlabeled_splits is not None:
            require(all(name.strip() for name in self.unlabeled_splits), prefix + "unlabeled_splits",
                    f"has an empty split name: {self.unlabeled_splits}")
            require(len(set(self.unlabeled_splits)) == len(self.unlabeled_splits), prefix + "unlabeled_splits",
                    f"names a split twice: {self.unlabeled_splits}")
        require(self.distill_labeled_weight >= 0, prefix + "distill_labeled_weight",
                f"must be zero or more, got {self.distill_labeled_weight}")
        require(0.0 < self.fixmatch_threshold <= 1.0, prefix + "fixmatch_threshold",
                f"must be in (0, 1], got {self.fixmatch_threshold}")
        require(self.fixmatch_unlabeled_weight >= 0, prefix + "fixmatch_unlabeled_weight",
                f"must be zero or more, got {self.fixmatch_unlabeled_weight}")
        require(
            0.0 <= self.byol_base_ema < 1.0, prefix + "byol_base_ema", f"must be in [0, 1), got {self.byol_base_ema}"
        )
        require(
            0.0 <= self.collapse_std_threshold < 1.0,
            prefix + "collapse_std_threshold",
            f"must be in [0, 1), got {self.collapse_std_threshold}",
        )
        minimum = min_image_size(self.encoder)
        require(self.image_size >= minimum, prefix + "image_size",
                f"must be at least {minimum} pixels for encoder {self.encoder!r}, got {self.image_size}")
        for key, preset in (("pretrain_augment", "strong"), ("finetune_augment", "weak"),
                            ("fixmatch_augment", "strong")):
            try:
                settings = augment_settings(preset, getattr(self, key))
            except ConfigError as error:
                raise ConfigError(str(error).replace("'augment.", f"'{prefix}{key}.")) from None
            for name, value in settings.items():
                if name.endswith("probability"):
                    require(0.0 <= value <= 1.0, f"{prefix}{key}.{name}", f"must be in [0, 1], got {value}")
                else:
                    require(value >= 0.0, f"{prefix}{key}.{name}", f"must be zero or more, got {value}")
            require(
                0.0 < settings["crop_scale_min"] <= settings["crop_scale_max"] <= 1.0,
                f"{prefix}{key}.crop_scale_min",
                "crop scales must satisfy 0 < crop_scale_min <= crop_scale_max <= 1",
            )
        require(
            self.strategy != "tpu" or bool(self.tpu_address),
            prefix + "tpu_address",
            "is required when training.strategy is 'tpu'",
        )

    def to_dict(self) -> dict:
        """The JSON-serialisable form passed to the Trainer as custom_config."""
        return dataclasses.asdict(self)

    def baseline_dict(self) -> dict:
        """What the BaselineTrainer's custom_config holds: only the settings it reads (BASELINE_FIELDS), so
        that a change of method, pretraining or candidate-only setting reuses the cached baseline.

        The candidate's semi-supervised stages (FixMatch, distillation) train on labeled batches too and the
        baseline trains on as many (trainer/finetune.py `matched`), so it also holds their epochs
        (SEMI_SUPERVISED_EPOCH_FIELDS, always: 0 must reach it) and, when they run, `batch_size` (their
        steps per epoch)."""
        fields = BASELINE_FIELDS + SEMI_SUPERVISED_EPOCH_FIELDS
        if self.fixmatch_epochs or self.distill_epochs:
            fields += ("batch_size",)
        return {key: value for key, value in self.to_dict().items() if key in fields}

    def pretraining_dict(self) -> dict:
        """What the Pretrainer's custom_config holds: every setting except those only fine-tuning reads
        (FINETUNING_ONLY_FIELDS), so that changing those reuses the cached pretrained encoder."""
        return {key: value for key, value in self.to_dict().items() if key not in FINETUNING_ONLY_FIELDS}


# The settings the supervised baseline reads: its encoder, its data, its schedule, the distribution, the precision.
# (The unlabeled splits count for the labeled batches of the candidate's semi-supervised stages.)
BASELINE_FIELDS = (
    "encoder", "encoder_width", "encoder_weights", "image_size", "image_feature", "label_feature", "class_names",
    "unlabeled_splits", "finetune_augment", "finetune_batch_size",
    "labels_per_class", "linear_epochs", "finetune_epochs", "baseline_learning_rate", "optimizer", "weight_decay",
    "seed", "strategy", "tpu_address", "precision", "decode_cache_mb", "decode_cache_dir",
)

# The epochs of the candidate's semi-supervised stages, whose labeled batches the baseline matches.
SEMI_SUPERVISED_EPOCH_FIELDS = ("fixmatch_epochs", "distill_epochs")

# Settings that only the classifier Trainers read (fine-tuning, the baseline, distillation, the label
# budget). Everything else may change the pretrained encoder and is part of the Pretrainer's cache key.
FINETUNING_ONLY_FIELDS = (
    "finetune_augment", "finetune_batch_size", "labels_per_class", "linear_epochs", "linear_learning_rate",
    "finetune_epochs", "finetune_learning_rate", "baseline_learning_rate", "distill_epochs",
    "distill_temperature", "distill_learning_rate", "distill_labeled_weight", "fixmatch_epochs", "fixmatch_threshold",
    "fixmatch_unlabeled_weight", "fixmatch_learning_rate", "fixmatch_augment",
)

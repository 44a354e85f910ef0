"""What a Trainer reads: which splits play unlabeled, train and eval, under which feature keys, the class
names and how many examples each split holds; from selfsup's ImageExampleGen or any tf.Example artifact.

- train and eval: the Trainer's `train_args` and `eval_args` splits (`fn_args.train_files`, `eval_files`);
- unlabeled (pretraining, FixMatch and distillation read them without labels, beside the train splits):
  `training.unlabeled_splits`; unset, the `unlabeled` split when the examples have one (ImageExampleGen's),
  else none, and the train splits are all there is to pretrain on (ImportExampleGen's train/eval);
- the encoded image and the int64 label: `training.image_feature`, `training.label_feature`;
- the class names (label i is class i): `class_names.json` beside the splits (ImageExampleGen writes it),
  else `training.class_names`, else `"0"` .. `"N-1"` for N = the largest train or eval label + 1;
- the split sizes: ImageExampleGen's `ingest_report.json` beside the splits, else counted (one pass over
  every split read; the Trainer says so), and then every train and eval label is checked too.
Every missing piece is an error naming the file, split, feature or setting.
"""

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from trainer import data, log
from trainer.contract import (
    CLASS_NAMES_FILE,
    EVAL_SPLIT,
    INGEST_REPORT_FILE,
    SPLIT_FOLDER_PREFIX,
    TRAIN_SPLIT,
    UNLABELED_SPLIT,
)
from trainer.hparams import ConfigError, TrainingConfig, require

LOG = log.get(__name__)
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class TrainingExamples:
    """The examples a Trainer reads (`read_training_examples`).

    Attributes:
      uri: the Examples artifact folder.
      splits: UNLABELED_SPLIT, TRAIN_SPLIT, EVAL_SPLIT (trainer/contract.py) -> the split names playing that
        part (UNLABELED_SPLIT's may be empty).
      files: the same -> their file patterns (`<uri>/Split-<name>/*`).
      sizes: the same -> how many examples those splits hold.
      class_names: label i is class_names[i].
      keys: the feature keys of the encoded image and of the label.
    """

    uri: str
    splits: Dict[str, List[str]]
    files: Dict[str, List[str]]
    sizes: Dict[str, int]
    class_names: List[str]
    keys: data.FeatureKeys

    @property
    def unlabeled_and_train_files(self) -> List[str]:
        """What pretraining, FixMatch and distillation read without labels: the unlabeled and the train splits."""
        return self.files[UNLABELED_SPLIT] + self.files[TRAIN_SPLIT]


def split_name(file_pattern: str) -> str:
    """'<uri>/Split-train/*' -> 'train'.

    Raises:
      ValueError: the pattern is not a TFX split's.
    """
    folder = os.path.basename(os.path.dirname(file_pattern.rstrip("/")))
    if not folder.startswith(SPLIT_FOLDER_PREFIX) or os.path.basename(file_pattern.rstrip("/")) != "*":
        raise ValueError(
            f"{file_pattern!r} is not a TFX split's file pattern '<examples>/{SPLIT_FOLDER_PREFIX}<name>/*'")
    return folder[len(SPLIT_FOLDER_PREFIX):]


def artifact_splits(examples_uri: str) -> List[str]:
    """The split names of the Examples artifact at `examples_uri` (its `Split-<name>` folders)."""
    if not tf.io.gfile.isdir(examples_uri):
        raise ValueError(f"the examples folder {examples_uri} does not exist")
    return sorted(entry.rstrip("/")[len(SPLIT_FOLDER_PREFIX):] for entry in tf.io.gfile.listdir(examples_uri)
                  if entry.startswith(SPLIT_FOLDER_PREFIX))


def read_training_examples(train_files: Sequence[str], eval_files: Sequence[str],
                           config: TrainingConfig) -> TrainingExamples:
    """Resolves and checks what the Trainer reads (see the module docstring).

    Args:
      train_files: the train splits' file patterns (`fn_args.train_files`: `<uri>/Split-<name>/*`).
      eval_files: the eval splits' (`fn_args.eval_files`), in the same Examples artifact.
      config: the training settings (feature keys, class names, unlabeled splits).

    Returns:
      The splits, files, sizes, class names and feature keys.

    Raises:
      ConfigError: a setting names a split the examples do not have, or contradicts class_names.json.
      ValueError: a split without files, an example without the image or label feature, a label outside
        the class names, fewer than two classes.
    """
    uri = data.examples_root(train_files)
    splits = {TRAIN_SPLIT: [split_name(pattern) for pattern in train_files],
              EVAL_SPLIT: [split_name(pattern) for pattern in eval_files]}
    if {data.examples_root([pattern]) for pattern in [*train_files, *eval_files]} != {uri}:
        raise ValueError(f"the train and eval splits must be in one Examples artifact, got {list(train_files)} and "
                         f"{list(eval_files)}")
    both = sorted(set(splits[TRAIN_SPLIT]) & set(splits[EVAL_SPLIT]))
    if both:
        raise ValueError(f"split {both} of {uri} is both a train and an eval split: the models would be evaluated "
                         "on images they were trained on (set the Trainers' train_args and eval_args apart)")
    available = artifact_splits(uri)
    splits[UNLABELED_SPLIT] = _unlabeled_splits(config.unlabeled_splits, available, splits, uri)
    files = {role: [os.path.join(uri, f"{SPLIT_FOLDER_PREFIX}{name}", "*") for name in names]
             for role, names in splits.items()}
    keys = data.FeatureKeys(config.image_feature, config.label_feature)
    for role, names in splits.items():
        for name, pattern in zip(names, files[role]):
            _check_features(pattern, name, keys, labeled=(role != UNLABELED_SPLIT))

    recorded = _read_json(os.path.join(uri, CLASS_NAMES_FILE))
    if recorded is not None and config.class_names is not None and recorded != config.class_names:
        raise ConfigError(f"config key 'training.class_names': {config.class_names} differ from the class names the "
                          f"examples recorded in {os.path.join(uri, CLASS_NAMES_FILE)}: {recorded}; leave "
                          "training.class_names unset for these examples")
    class_names = recorded if recorded is not None else config.class_names
    class_names_source = os.path.join(uri, CLASS_NAMES_FILE) if recorded is not None else "training.class_names"
    report = _read_json(os.path.join(uri, INGEST_REPORT_FILE))
    if report is not None and class_names is not None:
        counts = {name: counts["written"] for name, counts in report["splits"].items()}
        missing = [name for names in splits.values() for name in names if name not in counts]
        if missing:
            raise ValueError(f"{os.path.join(uri, INGEST_REPORT_FILE)} has no counts of split {missing}")
    else:
        counts, class_names = _count_and_check_labels(uri, splits, files, keys, class_names, class_names_source)
    sizes = {role: sum(counts[name] for name in names) for role, names in splits.items()}
    described = ", ".join(f"{role} {splits[role]} ({sizes[role]})"
                          for role in (UNLABELED_SPLIT, TRAIN_SPLIT, EVAL_SPLIT))
    LOG.info(f"examples {uri}: {described}; {len(class_names)} classes")
    return TrainingExamples(uri=uri, splits=splits, files=files, sizes=sizes, class_names=list(class_names), keys=keys)


def _unlabeled_splits(setting: Optional[List[str]], available: List[str], splits: Dict[str, List[str]],
                      uri: str) -> List[str]:
    labeled = splits[TRAIN_SPLIT] + splits[EVAL_SPLIT]
    if setting is None:
        unlabeled = [UNLABELED_SPLIT] if UNLABELED_SPLIT in available and UNLABELED_SPLIT not in labeled else []
        if not unlabeled:
            LOG.info(f"the examples at {uri} have no '{UNLABELED_SPLIT}' split (splits: {available}): pretraining, "
                     f"FixMatch and distillation read the train split {splits[TRAIN_SPLIT]} without labels only; "
                     "training.unlabeled_splits names others")
        return unlabeled
    for name in setting:
        require(name in available, "training.unlabeled_splits",
                f"split {name!r} is not in the examples at {uri}; their splits are {available}")
        require(name not in splits[EVAL_SPLIT], "training.unlabeled_splits",
                f"split {name!r} is an eval split: pretraining on the images the models are evaluated on biases "
                "the comparison")
        require(name not in splits[TRAIN_SPLIT], "training.unlabeled_splits",
                f"split {name!r} is a train split, which pretraining reads anyway")
    return list(setting)


def _check_features(file_pattern: str, split: str, keys: data.FeatureKeys, labeled: bool) -> None:
    """The split has files and its first example has the image bytes (and, `labeled`, the int64 label)."""
    if not tf.io.gfile.glob(file_pattern):
        raise ValueError(f"split {split!r} has no files ({file_pattern})")
    first = next(iter(data.records([file_pattern]).take(1)), None)
    if first is None:
        raise ValueError(f"split {split!r} has no examples ({file_pattern})")
    features = tf.train.Example.FromString(first.numpy()).features.feature
    wanted = [(keys.image, "bytes_list", "encoded image bytes", "training.image_feature")]
    if labeled or keys.label in features:
        wanted.append((keys.label, "int64_list", "int64 label", "training.label_feature"))
    for key, kind, what, setting in wanted:
        if key not in features or features[key].WhichOneof("kind") != kind:
            found = {name: feature.WhichOneof("kind") for name, feature in sorted(features.items())}
            raise ValueError(f"the examples of split {split!r} ({file_pattern}) have no {what} under {key!r} "
                             f"({setting}); their first example's features are {found}")


def _count_and_check_labels(uri: str, splits: Dict[str, List[str]], files: Dict[str, List[str]],
                            keys: data.FeatureKeys, class_names: Optional[List[str]], class_names_source: str):
    """Counts every split's examples (one pass) and checks the train and eval labels; returns
    ({split: examples}, class names), the class names derived from the labels when `class_names` is None."""
    started = time.monotonic()
    counts, label_ranges = {}, {}
    for role, names in splits.items():
        for name, pattern in zip(names, files[role]):
            counts[name], smallest, largest = 0, _INT64_MAX, -1
            for labels in data.records([pattern]).batch(4096).map(lambda batch: data.parse_labels(batch, keys)):
                labels = labels.numpy()
                counts[name] += len(labels)
                smallest, largest = min(smallest, int(labels.min())), max(largest, int(labels.max()))
            if role != UNLABELED_SPLIT:
                label_ranges[name] = (smallest, largest)
    LOG.info(f"no {INGEST_REPORT_FILE} beside the splits of {uri}: counted their examples in "
             f"{time.monotonic() - started:.1f} s: {counts}")
    for name, (smallest, _) in label_ranges.items():
        if smallest < 0:
            raise ValueError(f"split {name!r} of {uri} has examples without an int64 label under {keys.label!r} "
                             "(or with a negative one; training.label_feature): every train and eval example needs one")
    number = max(largest for _, largest in label_ranges.values()) + 1
    if class_names is None:
        if number < 2:
            raise ValueError(f"the labels of the train and eval splits of {uri} give {number} class; a classifier "
                             "needs at least two (training.label_feature, training.class_names)")
        LOG.info(f"no {CLASS_NAMES_FILE} beside the splits of {uri} and no training.class_names: "
                 f"{number} classes from the largest label, named '0' .. '{number - 1}'")
        return counts, [str(label) for label in range(number)]
    for name, (_, largest) in label_ranges.items():
        if largest >= len(class_names):
            raise ValueError(f"split {name!r} of {uri} has label {largest}, but the {len(class_names)} class names "
                             f"{class_names} ({class_names_source}) stop at label {len(class_names) - 1}")
    return counts, class_names


def _read_json(path: str):
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)

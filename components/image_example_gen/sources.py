"""The three image sources, each checked before Beam starts and read as Beam `SourceImage`s.

A SourceImage is one image on its way to the splits:
    (source_id, split, label, encoded image bytes or None, problem or None)
`source_id` names the file (folder), TFRecord file (tfrecord) or TFDS record so that a
skipped image can be found again.
"""

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import apache_beam as beam
import tensorflow as tf

from components.image_example_gen.data_config import DataConfig, as_data_config
from components.image_example_gen.folder_layout import SPLIT_ORDER, plan_folder
from trainer.contract import EVAL_SPLIT, IMAGE_FEATURE, LABEL_FEATURE, UNLABELED_LABEL, UNLABELED_SPLIT

SourceImage = Tuple[str, str, int, Optional[bytes], Optional[str]]
# The features of a TFDS image dataset (TFDS's names, which ours happen to equal).
TFDS_IMAGE, TFDS_LABEL = "image", "label"


class SourcePlan:
    """What a source will read, known before any Beam work.

    Attributes:
      class_names: the label mapping.
      ignored: files listed but not read (no image extension).
      input_files: every file the source reads or lists (what `fingerprint.input_fingerprint` hashes).
      identity: what else defines the input besides those files (e.g. a TFDS dataset's version).
      links_not_followed: symbolic links skipped, with the reason (folder sources).
      eval_per_class: {class name: eval images} when known before reading (folder sources), else None.
      split_counts: {split: images} when known before reading (folder sources), else None.
    """

    def __init__(self, class_names: List[str], ignored: List[str], read, input_files: List[str],
                 identity: str = "", links_not_followed: Optional[List[Dict[str, str]]] = None,
                 eval_per_class: Optional[Dict[str, int]] = None, split_counts: Optional[Dict[str, int]] = None):
        self.class_names = class_names
        self.ignored = ignored
        self._read = read
        self.input_files = input_files
        self.identity = identity
        self.links_not_followed = links_not_followed or []
        self.eval_per_class = eval_per_class
        self.split_counts = split_counts

    def read(self, pipeline: beam.Pipeline) -> beam.PCollection:
        """Returns the PCollection of SourceImages."""
        return self._read(pipeline)


def _read_file(record: Tuple[str, str, int], root: str) -> SourceImage:
    relative_path, split, label = record
    try:
        with tf.io.gfile.GFile(os.path.join(root, relative_path), "rb") as handle:
            return relative_path, split, label, handle.read(), None
    except (OSError, tf.errors.OpError) as error:
        return relative_path, split, label, None, f"cannot read file: {error}"


def plan_folder_source(root: str, eval_fraction: float, follow_external_links: bool) -> SourcePlan:
    plan = plan_folder(root, eval_fraction, follow_external_links)
    eval_per_class = {name: 0 for name in plan.class_names}
    for _, split, label in plan.records:
        if split == EVAL_SPLIT:
            eval_per_class[plan.class_names[label]] += 1

    def read(pipeline):
        return (
            pipeline
            | "ListImageFiles" >> beam.Create(plan.records)
            | "ReadImageFiles" >> beam.Map(_read_file, root)
        )

    input_files = [os.path.join(root, path) for path, _, _ in plan.records] + [
        os.path.join(root, path) for path in plan.ignored]
    return SourcePlan(plan.class_names, plan.ignored, read, input_files,
                      links_not_followed=plan.links_not_followed, eval_per_class=eval_per_class,
                      split_counts=plan.counts())


def _example_to_source_image(filename_and_record: Tuple[str, bytes], root: str, split: str) -> SourceImage:
    filename, record = filename_and_record
    source_id = os.path.relpath(filename, root) if not root.startswith(("gs://", "s3://")) else filename
    try:
        example = tf.train.Example.FromString(record)
    except Exception as error:  # protobuf's DecodeError
        return source_id, split, UNLABELED_LABEL, None, f"record is not a tf.Example: {error}"
    features = example.features.feature
    if IMAGE_FEATURE not in features or not features[IMAGE_FEATURE].bytes_list.value:
        return source_id, split, UNLABELED_LABEL, None, f"record has no '{IMAGE_FEATURE}' bytes feature"
    encoded = features[IMAGE_FEATURE].bytes_list.value[0]
    if split == UNLABELED_SPLIT:
        return source_id, split, UNLABELED_LABEL, encoded, None
    if LABEL_FEATURE not in features or not features[LABEL_FEATURE].int64_list.value:
        return source_id, split, UNLABELED_LABEL, encoded, f"labeled record has no '{LABEL_FEATURE}' int64 feature"
    return source_id, split, int(features[LABEL_FEATURE].int64_list.value[0]), encoded, None


def plan_tfrecord_source(root: str, class_names: List[str]) -> SourcePlan:
    """DIR/{unlabeled,train,eval}/* TFRecord files (gzip when named *.gz) of tf.Examples."""
    if not tf.io.gfile.isdir(root):
        raise ValueError(f"data folder does not exist or is not a folder: {root}")
    patterns, input_files = {}, []
    for split in SPLIT_ORDER:
        pattern = os.path.join(root, split, "*")
        files = tf.io.gfile.glob(pattern)
        if not files:
            raise ValueError(f"no TFRecord files for the {split} split: {pattern} matches nothing")
        patterns[split] = pattern
        input_files.extend(files)

    def read(pipeline):
        splits = []
        for split, pattern in patterns.items():
            splits.append(
                pipeline
                | f"Pattern[{split}]" >> beam.Create([pattern])
                | f"ReadRecords[{split}]" >> beam.io.ReadAllFromTFRecord(with_filename=True)
                | f"ToSourceImages[{split}]" >> beam.Map(_example_to_source_image, root, split)
            )
        return splits | "MergeSplits" >> beam.Flatten()

    return SourcePlan(list(class_names), [], read, input_files)


def _read_tfds_split(split_pair: Tuple[str, str], name: str, data_dir: Optional[str]) -> Iterator[SourceImage]:
    import tensorflow_datasets as tfds

    split, tfds_split = split_pair
    builder = tfds.builder(name, data_dir=data_dir)
    dataset = builder.as_dataset(split=tfds_split, decoders={TFDS_IMAGE: tfds.decode.SkipDecoding()})
    for index, record in enumerate(tfds.as_numpy(dataset)):
        label = UNLABELED_LABEL if split == UNLABELED_SPLIT else int(record[TFDS_LABEL])
        yield f"tfds:{name}/{tfds_split}#{index}", split, label, bytes(record[TFDS_IMAGE]), None


def plan_tfds_source(name: str, data_dir: Optional[str], splits: Dict[str, str]) -> SourcePlan:
    """A TFDS dataset already prepared in `data_dir` (nothing is downloaded)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends
        raise ValueError(f"unknown TFDS dataset {name!r}: {error}") from error
    features = builder.info.features
    if TFDS_IMAGE not in features or TFDS_LABEL not in features:
        raise ValueError(f"TFDS dataset {name!r} has no '{TFDS_IMAGE}' and '{TFDS_LABEL}' features: {list(features)}")
    class_names = list(features[TFDS_LABEL].names)
    if len(class_names) < 2:
        raise ValueError(f"TFDS dataset {name!r} has fewer than two classes: {class_names}")
    available = set(builder.info.splits.keys())
    for split, tfds_split in splits.items():
        base_split = tfds_split.split("[")[0]
        if base_split not in available:
            raise ValueError(
                f"TFDS dataset {name!r} in data dir {data_dir or tfds.core.constants.DATA_DIR} has no split "
                f"{base_split!r} (for our {split} split); available: {sorted(available) or 'none: not prepared'}. "
                "Prepare it with `tfds build` on a machine with internet access and copy the data dir."
            )

    def read(pipeline):
        return (
            pipeline
            | "TfdsSplits" >> beam.Create(sorted(splits.items()))
            | "ReadTfds" >> beam.FlatMap(_read_tfds_split, name, data_dir)
        )

    version_dir = builder.data_dir
    input_files = [os.path.join(directory, name) for directory, _, names in tf.io.gfile.walk(version_dir)
                   for name in names]
    return SourcePlan(class_names, [], read, input_files, identity=f"tfds:{name}:{builder.info.version}")


def plan_source(data: Union[DataConfig, Mapping[str, Any]]) -> SourcePlan:
    """Checks the configured source (a DataConfig, or its JSON form) and plans its reading.

    Raises:
      ValueError: naming the problem (missing folder, split, dataset) before Beam runs; ConfigError (a
        ValueError) when data.path is needed and not set.
    """
    data = as_data_config(data)
    if data.source == "folder":
        return plan_folder_source(data.required_path(), data.eval_fraction, data.follow_external_links)
    if data.source == "tfrecord":
        return plan_tfrecord_source(data.required_path(), data.class_names)
    return plan_tfds_source(data.tfds_name, data.tfds_data_dir, data.resolved_tfds_splits())

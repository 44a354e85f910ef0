"""Checks every image and writes the unlabeled/train/eval tf.Example splits and the report.

Plain functions so that they run and are tested without MLMD artifacts; the executor only
resolves artifact URIs and calls `ingest`.
"""

import hashlib
import json
import os
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import apache_beam as beam
import tensorflow as tf

from components.image_example_gen.data_config import DataConfig, as_data_config
from components.image_example_gen.folder_layout import SPLIT_ORDER
from components.image_example_gen.image_check import IMAGE_EXTENSIONS, image_problem
from components.image_example_gen.sources import SourceImage, SourcePlan, plan_source
from trainer import log
from trainer.contract import (
    CLASS_NAMES_FILE,
    EVAL_SPLIT,
    IMAGE_FEATURE,
    INGEST_REPORT_FILE,
    LABEL_FEATURE,
    PATH_FEATURE,
    SPLIT_FOLDER_PREFIX,
    UNLABELED_SPLIT,
)
from trainer.progress import Progress  # the one bar-or-lines choice, shared with the Trainers (no TFX inside)

LOG = log.get(__name__)
EXAMPLES_FILE_PREFIX = "data_tfrecord"
_SKIPPED_FILE = "skipped.jsonl"
_COUNTS_FILE = "written_counts.jsonl"
_DUPLICATES_FILE = "eval_duplicates.jsonl"
_NAMED_IN_ERROR = 20
# The progress counter of each ingestion running in this process, by a token the Beam step carries: with the
# local runner's in-memory Beam the checks run here and move the bar; elsewhere (other processes, Dataflow)
# the token is not found and the step only passes its rows on.
_PROGRESS: Dict[str, Progress] = {}


def make_example(encoded: bytes, label: int, source_id: str) -> bytes:
    """A serialized tf.Example with the three features every later step reads."""
    feature = {
        IMAGE_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        LABEL_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        PATH_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[source_id.encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def check_image(image: SourceImage, max_pixels: int, num_classes: int):
    """Tags an image ("ok", split, serialized example, {"id", "label", "digest"}) or
    ("skipped", split, report entry). The digest (SHA-256 of the encoded bytes) finds eval images
    that also sit in another split."""
    source_id, split, label, encoded, problem = image
    if problem is None:
        problem = image_problem(encoded, max_pixels)
    if problem is None and split != UNLABELED_SPLIT and not 0 <= label < num_classes:
        problem = f"label {label} is outside the class list (0..{num_classes - 1})"
    if problem is not None:
        return "skipped", split, {"id": source_id, "split": split, "reason": problem}
    digest = hashlib.sha256(encoded).hexdigest()
    return "ok", split, make_example(encoded, label, source_id), {"id": source_id, "label": label, "digest": digest}


def _count_checked(row, token: str):
    """Passes a checked row on, counting it on this ingestion's progress bar when it runs in this process."""
    counter = _PROGRESS.get(token)
    if counter is not None:
        counter.update()
    return row


def mark_eval_duplicate(row, eval_digests: Dict[str, str]):
    """Adds "duplicate_of" (the eval image with the same bytes, or None) to a train/unlabeled row."""
    _, split, _, meta = row
    duplicate_of = eval_digests.get(meta["digest"]) if split != EVAL_SPLIT else None
    return row[:3] + (dict(meta, duplicate_of=duplicate_of),)


def _read_jsonl(pattern: str) -> List[Dict[str, Any]]:
    rows = []
    for path in tf.io.gfile.glob(pattern):
        with tf.io.gfile.GFile(path) as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def _write_jsonl(rows: beam.PCollection, path: str, label: str):
    return (rows | f"{label}ToJson" >> beam.Map(json.dumps)
            | f"Write{label}" >> beam.io.WriteToText(path, shard_name_template=""))


def ingest(
    data: Union[DataConfig, Mapping[str, Any]],
    examples_uri: str,
    report_uri: str,
    make_pipeline: Callable[[], beam.Pipeline],
    input_fingerprint: Optional[Dict[str, Any]] = None,
    min_eval_per_class: Optional[int] = None,
    plan: Optional[SourcePlan] = None,
) -> Dict[str, Any]:
    """Reads, checks and writes every image of the configured source.

    Args:
      data: the `data:` config section (data_config.DataConfig, or its JSON form as a dict).
      examples_uri: the Examples artifact folder; splits go to Split-<name>/data_tfrecord-*.gz.
      report_uri: folder for ingest_report.json (and the skipped list).
      make_pipeline: returns a Beam pipeline to run the work in (the executor's, or a test one).
      input_fingerprint: what fingerprint.input_fingerprint gave for the input (recorded in the report).
      min_eval_per_class: the fewest eval images a class may have (evaluation.min_eval_per_class);
        None checks nothing.
      plan: sources.plan_source(data) when the caller has just made it (the driver's, see driver.py);
        None plans here.

    Returns:
      The report dict also written to report_uri/ingest_report.json and, with the class
      names, next to the splits (examples_uri/ingest_report.json, examples_uri/class_names.json).

    Raises:
      ValueError: bad layout or source (before Beam runs), a label outside the class list, a
        share of undecodable images above data.max_bad_fraction (naming the files), eval images
        also in training with data.on_eval_duplicates 'fail', or too few eval images of a class.
    """
    data = as_data_config(data)
    source = plan or plan_source(data)
    class_names = source.class_names
    work_dir = os.path.join(report_uri, ".work")
    LOG.info("Ingesting %s images from %s", data.source, data.location)
    token = uuid.uuid4().hex
    _PROGRESS[token] = Progress(sum(source.split_counts.values()) if source.split_counts else None,
                                "Ingesting images", "image")
    try:
        _run_ingestion(source, data, examples_uri, work_dir, make_pipeline, token)
    finally:
        _PROGRESS.pop(token).close()

    skipped = _read_jsonl(os.path.join(work_dir, _SKIPPED_FILE))
    duplicates = sorted(_read_jsonl(os.path.join(work_dir, _DUPLICATES_FILE)), key=lambda row: row["id"])
    counts = _read_jsonl(os.path.join(work_dir, _COUNTS_FILE))
    tf.io.gfile.rmtree(work_dir)
    report = build_report(data, class_names, counts, skipped, source.ignored, duplicates, input_fingerprint,
                          source.links_not_followed)
    for folder in (report_uri, examples_uri):
        with tf.io.gfile.GFile(os.path.join(folder, INGEST_REPORT_FILE), "w") as handle:
            json.dump(report, handle, indent=2)
    with tf.io.gfile.GFile(os.path.join(examples_uri, CLASS_NAMES_FILE), "w") as handle:
        json.dump(class_names, handle)
    raise_on_bad_input(report, data.max_bad_fraction, os.path.join(report_uri, INGEST_REPORT_FILE))
    if min_eval_per_class is not None:
        check_eval_per_class(report["eval_per_class"], min_eval_per_class, data.location)
    return report


def _run_ingestion(source: SourcePlan, data: DataConfig, examples_uri: str, work_dir: str,
                   make_pipeline: Callable[[], beam.Pipeline], token: str) -> None:
    """The Beam work of `ingest`: checks every image, writes the splits and the work files it reads back."""
    policy = data.on_eval_duplicates
    with make_pipeline() as pipeline:
        checked = (source.read(pipeline)
                   | "CheckImages" >> beam.Map(check_image, data.max_image_pixels, len(source.class_names))
                   | "CountChecked" >> beam.Map(_count_checked, token))
        usable = checked | "SelectUsable" >> beam.Filter(lambda row: row[0] == "ok")
        eval_digests = (
            usable
            | "SelectEval" >> beam.Filter(lambda row: row[1] == EVAL_SPLIT)
            | "EvalDigests" >> beam.Map(lambda row: (row[3]["digest"], row[3]["id"]))
            | "OneIdPerDigest" >> beam.CombinePerKey(min)
        )
        marked = usable | "MarkEvalDuplicates" >> beam.Map(
            mark_eval_duplicate, eval_digests=beam.pvalue.AsDict(eval_digests))
        kept = marked | "DropEvalDuplicates" >> beam.Filter(
            lambda row: policy == "keep" or row[3]["duplicate_of"] is None)
        for split in SPLIT_ORDER:
            _ = (
                kept
                | f"Select[{split}]" >> beam.Filter(lambda row, split=split: row[1] == split)
                | f"Serialized[{split}]" >> beam.Map(lambda row: row[2])
                | f"Shuffle[{split}]" >> beam.Reshuffle()
                | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                    os.path.join(examples_uri, SPLIT_FOLDER_PREFIX + split, EXAMPLES_FILE_PREFIX),
                    file_name_suffix=".gz")
            )
        _write_jsonl(checked | "SelectSkipped" >> beam.Filter(lambda row: row[0] == "skipped")
                     | "SkippedEntry" >> beam.Map(lambda row: row[2]), os.path.join(work_dir, _SKIPPED_FILE), "Skipped")
        _write_jsonl(marked | "SelectDuplicates" >> beam.Filter(lambda row: row[3]["duplicate_of"] is not None)
                     | "DuplicateEntry" >> beam.Map(lambda row: {"id": row[3]["id"], "split": row[1],
                                                                 "duplicate_of": row[3]["duplicate_of"]}),
                     os.path.join(work_dir, _DUPLICATES_FILE), "Duplicates")
        _write_jsonl(kept | "SplitAndLabel" >> beam.Map(lambda row: (row[1], row[3]["label"]))
                     | "CountPerSplitAndLabel" >> beam.combiners.Count.PerElement()
                     | "CountEntry" >> beam.Map(lambda pair: {"split": pair[0][0], "label": pair[0][1],
                                                              "count": pair[1]}),
                     os.path.join(work_dir, _COUNTS_FILE), "Counts")


def build_report(
    data: Union[DataConfig, Mapping[str, Any]],
    class_names: List[str],
    counts: List[Dict[str, Any]],
    skipped: List[Dict[str, Any]],
    ignored: List[str],
    duplicates: Sequence[Dict[str, Any]] = (),
    input_fingerprint: Optional[Dict[str, Any]] = None,
    links_not_followed: Sequence[Dict[str, str]] = (),
) -> Dict[str, Any]:
    """The ingest report.

    Args:
      data: the `data:` section (its source, location and on_eval_duplicates are recorded).
      class_names: the label mapping.
      counts: {"split", "label", "count"} of the images written.
      skipped: {"id", "split", "reason"} of the images that could not be used.
      ignored: files without an image extension.
      duplicates: {"id", "split", "duplicate_of"} of train/unlabeled copies of eval images.
      input_fingerprint: fingerprint.input_fingerprint of the input.
      links_not_followed: symbolic links skipped, with the reason.

    Returns:
      Per split: images read (written + skipped + eval copies dropped), written, skipped and copies of
      eval images; the skipped list with reasons; eval images per class; the eval copies; the input.
    """
    data = as_data_config(data)
    policy = data.on_eval_duplicates
    splits = {}
    for split in SPLIT_ORDER:
        written = sum(row["count"] for row in counts if row["split"] == split)
        skipped_here = sum(1 for row in skipped if row["split"] == split)
        duplicates_here = sum(1 for row in duplicates if row["split"] == split)
        dropped = 0 if policy == "keep" else duplicates_here
        splits[split] = {
            "read": written + skipped_here + dropped,
            "written": written,
            "skipped": skipped_here,
            "duplicates_of_eval": duplicates_here,
        }
    eval_per_class = {name: 0 for name in class_names}
    for row in counts:
        if row["split"] == EVAL_SPLIT and 0 <= row["label"] < len(class_names):
            eval_per_class[class_names[row["label"]]] += row["count"]
    return {
        "source": data.source,
        "location": data.location,
        "input": input_fingerprint,
        "class_names": class_names,
        "splits": splits,
        "eval_per_class": eval_per_class,
        "skipped": sorted(skipped, key=lambda row: row["id"]),
        "eval_duplicates": {"policy": policy, "count": len(duplicates), "files": list(duplicates)},
        "ignored_non_image_files": ignored,
        "links_not_followed": list(links_not_followed),
    }


def check_eval_per_class(eval_per_class: Dict[str, int], min_per_class: int, location: str) -> None:
    """Fails when a class has fewer eval images than evaluation.min_eval_per_class (or none at all):
    a blessing decided on a handful of images per class says little."""
    missing = sorted(name for name, count in eval_per_class.items() if count == 0)
    if missing:
        raise ValueError(f"the eval split of {location} has no images of the classes {missing}: add test images "
                         "of every class (test/<class>/) or raise data.eval_fraction")
    few = {name: count for name, count in sorted(eval_per_class.items()) if count < min_per_class}
    if few:
        raise ValueError(
            f"the eval split of {location} has fewer than evaluation.min_eval_per_class={min_per_class} images of "
            f"the classes {few}: the blessing would be decided on too few images. Add test images, raise "
            "data.eval_fraction, or lower evaluation.min_eval_per_class"
        )


def raise_on_bad_input(report: Dict[str, Any], max_bad_fraction: float, report_path: Optional[str]) -> None:
    """Fails on labels outside the class list, empty splits, or too many undecodable images."""
    skipped = report["skipped"]
    bad_labels = [row for row in skipped if row["reason"].startswith("label ")]
    if bad_labels:
        named = "; ".join(f"{row['id']}: {row['reason']}" for row in bad_labels[:_NAMED_IN_ERROR])
        raise ValueError(f"{len(bad_labels)} labeled records have labels outside data.class_names: {named}")
    read = sum(split["read"] for split in report["splits"].values())
    if read and len(skipped) / read > max_bad_fraction:
        named = ", ".join(f"{row['id']} ({row['reason']})" for row in skipped[:_NAMED_IN_ERROR])
        more = f" and {len(skipped) - _NAMED_IN_ERROR} more" if len(skipped) > _NAMED_IN_ERROR else ""
        raise ValueError(
            f"{len(skipped)} of {read} images could not be used ({len(skipped) / read:.1%}, above "
            f"data.max_bad_fraction={max_bad_fraction:.1%}): {named}{more}. Full list: {report_path}"
        )
    for split, counts in report["splits"].items():
        if counts["written"] == 0:
            raise ValueError(f"no usable images in the {split} split (read {counts['read']}, all skipped)")
    if skipped:
        LOG.warning("Skipped %d of %d images (listed in %s)", len(skipped), read, report_path)
    duplicates = report["eval_duplicates"]
    if duplicates["count"]:
        named = ", ".join(f"{row['id']} (= {row['duplicate_of']})" for row in duplicates["files"][:_NAMED_IN_ERROR])
        if duplicates["policy"] == "fail":
            raise ValueError(f"{duplicates['count']} images in train/unlabeled are byte-for-byte copies of eval "
                             f"images (data.on_eval_duplicates: fail): {named}. Full list: {report_path}")
        LOG.warning("%s %d train/unlabeled images that are copies of eval images: %s",
                    "Kept" if duplicates["policy"] == "keep" else "Dropped", duplicates["count"], named)
    if report["ignored_non_image_files"]:
        LOG.warning("Ignored %d files without an image extension (%s): %s", len(report["ignored_non_image_files"]),
                    "/".join(IMAGE_EXTENSIONS), ", ".join(report["ignored_non_image_files"][:_NAMED_IN_ERROR]))

"""Checks every candidate image and writes the unlabeled/train/eval tf.Example splits and the report.

Plain functions so that they run and are tested without MLMD artifacts; the executor only
resolves artifact URIs and calls `ingest`.
"""

import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional

import apache_beam as beam
import tensorflow as tf

from components.image_example_gen.folder_layout import SPLITS, UNLABELED
from components.image_example_gen.image_check import image_problem
from components.image_example_gen.sources import (
    IMAGE_FEATURE,
    LABEL_FEATURE,
    PATH_FEATURE,
    Candidate,
    plan_source,
)

REPORT_FILE = "ingest_report.json"
CLASS_NAMES_FILE = "class_names.json"
EXAMPLES_FILE_PREFIX = "data_tfrecord"
_SKIPPED_FILE = "skipped.jsonl"
_COUNTS_FILE = "written_counts.jsonl"
_NAMED_IN_ERROR = 20


def make_example(encoded: bytes, label: int, source_id: str) -> bytes:
    """A serialized tf.Example with the three features every later step reads."""
    feature = {
        IMAGE_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        LABEL_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        PATH_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[source_id.encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def check_candidate(candidate: Candidate, max_pixels: int, num_classes: int):
    """Tags a candidate ("ok", split, serialized example) or ("skipped", split, report entry)."""
    source_id, split, label, encoded, problem = candidate
    if problem is None:
        problem = image_problem(encoded, max_pixels)
    if problem is None and split != UNLABELED and not 0 <= label < num_classes:
        problem = f"label {label} is outside the class list (0..{num_classes - 1})"
    if problem is not None:
        return "skipped", split, {"id": source_id, "split": split, "reason": problem}
    return "ok", split, make_example(encoded, label, source_id)


def _read_jsonl(pattern: str) -> List[Dict[str, Any]]:
    rows = []
    for path in tf.io.gfile.glob(pattern):
        with tf.io.gfile.GFile(path) as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def ingest(
    data: Dict[str, Any],
    examples_uri: str,
    report_uri: str,
    make_pipeline: Callable[[], beam.Pipeline],
) -> Dict[str, Any]:
    """Reads, checks and writes every image of the configured source.

    Args:
      data: the `data:` config section as a dict (see pipeline/config.py DataConfig).
      examples_uri: the Examples artifact folder; splits go to Split-<name>/data_tfrecord-*.gz.
      report_uri: folder for ingest_report.json (and the skipped list).
      make_pipeline: returns a Beam pipeline to run the work in (the executor's, or a test one).

    Returns:
      The report dict also written to report_uri/ingest_report.json and, with the class
      names, next to the splits (examples_uri/ingest_report.json, examples_uri/class_names.json).

    Raises:
      ValueError: bad layout or source (before Beam runs), a label outside the class list, or a
        share of undecodable images above data.max_bad_fraction (naming the files).
    """
    source = plan_source(data)
    class_names = source.class_names
    work_dir = os.path.join(report_uri, ".work")
    logging.info("Ingesting %s images from %s", data["source"], data.get("path") or data.get("tfds_name"))
    with make_pipeline() as pipeline:
        checked = source.read(pipeline) | "CheckImages" >> beam.Map(
            check_candidate, data["max_image_pixels"], len(class_names)
        )
        for split in SPLITS:
            _ = (
                checked
                | f"Select[{split}]" >> beam.Filter(lambda row, split=split: row[0] == "ok" and row[1] == split)
                | f"Serialized[{split}]" >> beam.Map(lambda row: row[2])
                | f"Shuffle[{split}]" >> beam.Reshuffle()
                | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                    os.path.join(examples_uri, f"Split-{split}", EXAMPLES_FILE_PREFIX), file_name_suffix=".gz"
                )
            )
        _ = (
            checked
            | "SelectSkipped" >> beam.Filter(lambda row: row[0] == "skipped")
            | "SkippedToJson" >> beam.Map(lambda row: json.dumps(row[2]))
            | "WriteSkipped" >> beam.io.WriteToText(os.path.join(work_dir, _SKIPPED_FILE), shard_name_template="")
        )
        _ = (
            checked
            | "OkSplit" >> beam.Filter(lambda row: row[0] == "ok")
            | "SplitName" >> beam.Map(lambda row: row[1])
            | "CountPerSplit" >> beam.combiners.Count.PerElement()
            | "CountsToJson" >> beam.Map(lambda pair: json.dumps({"split": pair[0], "count": pair[1]}))
            | "WriteCounts" >> beam.io.WriteToText(os.path.join(work_dir, _COUNTS_FILE), shard_name_template="")
        )

    skipped = _read_jsonl(os.path.join(work_dir, _SKIPPED_FILE))
    written = {row["split"]: row["count"] for row in _read_jsonl(os.path.join(work_dir, _COUNTS_FILE))}
    tf.io.gfile.rmtree(work_dir)
    report = build_report(data, class_names, written, skipped, source.ignored)
    for folder in (report_uri, examples_uri):
        with tf.io.gfile.GFile(os.path.join(folder, REPORT_FILE), "w") as handle:
            json.dump(report, handle, indent=2)
    with tf.io.gfile.GFile(os.path.join(examples_uri, CLASS_NAMES_FILE), "w") as handle:
        json.dump(class_names, handle)
    raise_on_bad_input(report, data["max_bad_fraction"], os.path.join(report_uri, REPORT_FILE))
    return report


def build_report(
    data: Dict[str, Any],
    class_names: List[str],
    written: Dict[str, int],
    skipped: List[Dict[str, Any]],
    ignored: List[str],
) -> Dict[str, Any]:
    """Per split: images read (written + skipped), written and skipped; the skipped list with reasons."""
    splits = {}
    for split in SPLITS:
        skipped_here = sum(1 for row in skipped if row["split"] == split)
        splits[split] = {
            "read": written.get(split, 0) + skipped_here,
            "written": written.get(split, 0),
            "skipped": skipped_here,
        }
    return {
        "source": data["source"],
        "location": data.get("path") or data.get("tfds_name"),
        "class_names": class_names,
        "splits": splits,
        "skipped": sorted(skipped, key=lambda row: row["id"]),
        "ignored_non_image_files": ignored,
    }


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
        logging.warning("Skipped %d of %d images (listed in %s)", len(skipped), read, report_path)

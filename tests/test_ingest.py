"""Ingestion: image checks, folder layout errors, and the Beam ingest of each source."""

import io
import json
import logging
import os
import shutil
import zlib

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from image_samples import GOOD_IMAGES, encode, png_declaring, write_image_folder
from PIL import Image, ImageOps
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.artifacts import IngestReport
from components.image_example_gen import driver
from components.image_example_gen import executor as example_gen_executor
from components.image_example_gen import ingest as ingest_module
from components.image_example_gen.data_config import DataConfig
from components.image_example_gen.fingerprint import input_fingerprint
from components.image_example_gen.folder_layout import is_eval_by_hash, plan_folder
from components.image_example_gen.image_check import image_problem
from components.image_example_gen.ingest import ingest, make_example
from components.image_example_gen.sources import plan_source
from trainer.contract import CLASS_NAMES_FILE, INPUT_FINGERPRINT_PROPERTY
from trainer.contract import INGEST_REPORT_FILE as REPORT_FILE
from trainer.data import decode_image
from trainer.hparams import ConfigError

MAX_PIXELS = 10_000_000


@pytest.mark.parametrize("name", sorted(GOOD_IMAGES))
def test_decodable_images_pass_and_decode_to_the_configured_size(name):
    encoded = GOOD_IMAGES[name]()
    assert image_problem(encoded, MAX_PIXELS) is None
    decoded = decode_image(tf.constant(encoded), 24)
    assert decoded.shape == (24, 24, 3)
    assert 0.0 <= float(tf.reduce_min(decoded)) and float(tf.reduce_max(decoded)) <= 1.0


@pytest.mark.parametrize(
    "encoded, reason",
    [
        (b"", "empty file"),
        (b"this is a text file named .jpg", "not a decodable image"),
        (encode("RGB", image_format="JPEG")[:200], "not a decodable image"),
        (png_declaring(5_000, 4_000), "too large: 5000x4000 pixels exceeds data.max_image_pixels"),
        (png_declaring(100_000, 100_000), "too large"),
    ],
    ids=["zero bytes", "text", "truncated jpeg", "declared 5000x4000", "decompression bomb"],
)
def test_bad_images_are_rejected_with_a_reason(encoded, reason):
    assert reason in image_problem(encoded, MAX_PIXELS)


def test_folder_plan_assigns_splits_and_labels(tmp_path):
    plan = plan_folder(str(write_image_folder(tmp_path)), eval_fraction=0.2)
    assert plan.class_names == ["cat", "dog"]
    assert plan.counts() == {"unlabeled": 8, "train": 12, "eval": 6}
    labels = {path: label for path, _, label in plan.records}
    assert labels["labeled/dog/0.png"] == 1 and labels["test/cat/2.png"] == 0
    assert labels["unlabeled/batch1/deeper/u1.jpg"] == -1


def test_without_test_folder_labeled_images_are_hash_split(tmp_path):
    plan = plan_folder(str(write_image_folder(tmp_path, per_class=40, test=False)), eval_fraction=0.25)
    counts = plan.counts()
    assert counts["train"] + counts["eval"] == 80 and 8 <= counts["eval"] <= 32
    again = plan_folder(str(tmp_path), eval_fraction=0.25)
    assert again.records == plan.records  # deterministic
    labeled = [(path, split) for path, split, _ in plan.records if split != "unlabeled"]
    assert all((split == "eval") == is_eval_by_hash(path, 0.25) for path, split in labeled)


@pytest.mark.parametrize(
    "break_layout, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "unlabeled").mkdir(parents=True), "no labeled/ folder"),
        (lambda root: (root / "labeled").mkdir(parents=True), "is empty"),
        (lambda root: write_image_folder(root, classes=("cat",)), "single class"),
        (lambda root: (write_image_folder(root), (root / "test" / "horse").mkdir()), "not in labeled/: \\['horse'\\]"),
        (lambda root: (write_image_folder(root), (root / "labeled" / "loose.png").write_bytes(b"x")),
         "must sit in a class sub-folder"),
        (lambda root: write_image_folder(root, unlabeled=0), "unlabeled has no image files"),
        (lambda root: (write_image_folder(root), (root / "labeled" / "bird").mkdir()), "bird has no image files"),
    ],
    ids=["missing folder", "no labeled", "empty labeled", "one class", "unknown test class", "loose file",
         "no unlabeled images", "empty class folder"],
)
def test_layout_problems_raise_before_any_work(tmp_path, break_layout, message):
    root = tmp_path / "data"
    break_layout(root)
    with pytest.raises(ValueError, match=message):
        plan_folder(str(root), eval_fraction=0.2)


def direct_pipeline():
    return beam.Pipeline(argv=["--runner=DirectRunner"])


def data_section(**overrides):
    data = dict(source="folder", path=None, class_names=None, tfds_name=None, tfds_data_dir=None,
                tfds_splits=None, eval_fraction=0.2, max_bad_fraction=0.2, max_image_pixels=MAX_PIXELS,
                follow_external_links=False, on_eval_duplicates="drop")
    data.update(overrides)
    return data


def read_split(examples_uri, split):
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in records]


def test_ingest_skips_counts_and_names_bad_images(tmp_path, caplog):
    root = write_image_folder(tmp_path / "data")
    (root / "unlabeled" / "broken.jpg").write_bytes(b"not an image")
    (root / "unlabeled" / "empty.png").write_bytes(b"")
    (root / "unlabeled" / "notes.txt").write_text("ignored, but reported")
    (root / "unlabeled" / "photo.webp").write_bytes(encode("RGB", image_format="WEBP"))  # a real WebP: not read
    with caplog.at_level(logging.INFO, logger="selfsup"):
        report = ingest(data_section(path=str(root)), str(tmp_path / "examples"), str(tmp_path / "report"),
                        direct_pipeline)

    # The console lines come from the selfsup logger: progress at INFO, what was left out at WARNING.
    lines = [(record.name, record.levelno, record.getMessage()) for record in caplog.records
             if record.name.startswith("selfsup.")]
    logger = "selfsup.components.image_example_gen.ingest"
    assert (logger, logging.INFO, f"Ingesting folder images from {root}") in lines
    assert any(line[:2] == (logger, logging.WARNING) and line[2].startswith("Skipped 2 of 28 images") for line in lines)
    assert any(line[:2] == (logger, logging.WARNING) and line[2].startswith("Ignored 2 files") for line in lines)

    assert report["splits"]["unlabeled"] == {"read": 10, "written": 8, "skipped": 2, "duplicates_of_eval": 0}
    assert report["splits"]["train"]["written"] == 12 and report["splits"]["eval"]["written"] == 6
    assert [row["id"] for row in report["skipped"]] == ["unlabeled/broken.jpg", "unlabeled/empty.png"]
    assert report["ignored_non_image_files"] == ["unlabeled/notes.txt", "unlabeled/photo.webp"]
    with open(tmp_path / "report" / REPORT_FILE) as handle:
        assert json.load(handle) == report
    with open(tmp_path / "examples" / CLASS_NAMES_FILE) as handle:
        assert json.load(handle) == ["cat", "dog"]

    train = read_split(str(tmp_path / "examples"), "train")
    assert len(train) == 12
    features = train[0].features.feature
    assert set(features) == {"image", "label", "path"}
    path = features["path"].bytes_list.value[0].decode()
    assert features["label"].int64_list.value[0] == (0 if "/cat/" in path else 1)
    assert features["image"].bytes_list.value[0] == (root / path).read_bytes()  # original bytes, unchanged


def test_too_many_bad_images_fail_the_run_naming_them(tmp_path):
    root = write_image_folder(tmp_path / "data")
    for index in range(5):
        (root / "unlabeled" / f"bad{index}.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"5 of 31 images could not be used.*unlabeled/bad0.jpg"):
        ingest(data_section(path=str(root), max_bad_fraction=0.1), str(tmp_path / "examples"),
               str(tmp_path / "report"), direct_pipeline)


def write_tfrecords(root, split, labels):
    folder = root / split
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "part-0.tfrecord.gz"), options="GZIP") as writer:
        for index, label in enumerate(labels):
            seed = zlib.crc32(f"{split}/{index}".encode())
            writer.write(make_example(encode("RGB", size=(9, 9), image_format="JPEG", seed=seed), label,
                                      f"{split}-{index}"))


def test_tfrecord_source(tmp_path):
    root = tmp_path / "records"
    write_tfrecords(root, "unlabeled", [-1] * 5)
    write_tfrecords(root, "train", [0, 1, 2, 1])
    write_tfrecords(root, "eval", [2, 0, 1])
    data = data_section(source="tfrecord", path=str(root), class_names=["a", "b", "c"])
    report = ingest(data, str(tmp_path / "examples"), str(tmp_path / "report"), direct_pipeline)
    assert {split: counts["written"] for split, counts in report["splits"].items()} == {
        "unlabeled": 5, "train": 4, "eval": 3}
    assert report["eval_per_class"] == {"a": 1, "b": 1, "c": 1}
    assert sorted(e.features.feature["label"].int64_list.value[0] for e in read_split(str(tmp_path / "examples"),
                                                                                       "train")) == [0, 1, 1, 2]


def test_tfrecord_label_outside_the_class_list_is_an_error(tmp_path):
    root = tmp_path / "records"
    write_tfrecords(root, "unlabeled", [-1] * 3)
    write_tfrecords(root, "train", [0, 7])
    write_tfrecords(root, "eval", [1])
    data = data_section(source="tfrecord", path=str(root), class_names=["a", "b"])
    with pytest.raises(ValueError, match="label 7 is outside the class list"):
        ingest(data, str(tmp_path / "examples"), str(tmp_path / "report"), direct_pipeline)


def test_tfrecord_missing_split_fails_before_beam(tmp_path):
    root = tmp_path / "records"
    write_tfrecords(root, "train", [0, 1])
    with pytest.raises(ValueError, match="unlabeled split"):
        ingest(data_section(source="tfrecord", path=str(root), class_names=["a", "b"]), str(tmp_path / "e"),
               str(tmp_path / "r"), lambda: pytest.fail("Beam must not start"))


def prepared_tfds_metadata(data_dir, name, split_names, examples_per_split):
    """Writes the dataset_info of a 'prepared' dataset so TFDS's mock data serves its splits."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name=name, filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[examples_per_split], num_bytes=0,
                            filename_template=template.replace(split=split))
        for split in split_names
    ]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize("name, tfds_splits", [
    ("stl10", {"unlabeled": "unlabelled", "train": "train", "eval": "test"}),
    ("cifar10", {"unlabeled": "train[:80%]", "train": "train[80%:]", "eval": "test"}),
])
def test_tfds_source_with_tfds_mock_data(tmp_path, name, tfds_splits):
    """The real TFDS reading path on TFDS's mock data (downloads are impossible on these machines)."""
    split_names = sorted({split.split("[")[0] for split in tfds_splits.values()})
    prepared_tfds_metadata(tmp_path / "tfds", name, split_names, 10)
    # TFDS's mock data serves the same images in every split: keep those copies of eval images.
    data = data_section(source="tfds", tfds_name=name, tfds_data_dir=str(tmp_path / "tfds"), tfds_splits=tfds_splits,
                        on_eval_duplicates="keep")
    with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path / "tfds")):
        report = ingest(data, str(tmp_path / "examples"), str(tmp_path / "report"), direct_pipeline)
    assert report["class_names"][:2] == tfds.builder(name, data_dir=str(tmp_path / "tfds")).info.features[
        "label"].names[:2]
    assert all(counts["written"] == 10 for counts in report["splits"].values())
    unlabeled = read_split(str(tmp_path / "examples"), "unlabeled")
    assert {e.features.feature["label"].int64_list.value[0] for e in unlabeled} == {-1}


def test_tfds_dataset_that_is_not_prepared_fails_before_beam(tmp_path):
    data = data_section(source="tfds", tfds_name="stl10", tfds_data_dir=str(tmp_path),
                        tfds_splits={"unlabeled": "unlabelled", "train": "train", "eval": "test"})
    with pytest.raises(ValueError, match="not prepared"):
        ingest(data, str(tmp_path / "e"), str(tmp_path / "r"), lambda: pytest.fail("Beam must not start"))


def copy_eval_image_into_training(root):
    """test/cat/0.png copied byte for byte into unlabeled/ and into labeled/dog/ (a train image)."""
    original = (root / "test" / "cat" / "0.png").read_bytes()
    (root / "unlabeled" / "copy.png").write_bytes(original)
    (root / "labeled" / "dog" / "copy.png").write_bytes(original)


def test_copies_of_eval_images_are_dropped_from_training_and_named(tmp_path):
    root = write_image_folder(tmp_path / "data")
    copy_eval_image_into_training(root)
    report = ingest(data_section(path=str(root)), str(tmp_path / "examples"), str(tmp_path / "report"),
                    direct_pipeline)
    assert report["eval_duplicates"] == {"policy": "drop", "count": 2, "files": [
        {"id": "labeled/dog/copy.png", "split": "train", "duplicate_of": "test/cat/0.png"},
        {"id": "unlabeled/copy.png", "split": "unlabeled", "duplicate_of": "test/cat/0.png"}]}
    assert report["splits"]["unlabeled"] == {"read": 9, "written": 8, "skipped": 0, "duplicates_of_eval": 1}
    assert report["splits"]["train"] == {"read": 13, "written": 12, "skipped": 0, "duplicates_of_eval": 1}
    assert report["splits"]["eval"]["written"] == 6
    written = {example.features.feature["path"].bytes_list.value[0].decode()
               for split in ("unlabeled", "train") for example in read_split(str(tmp_path / "examples"), split)}
    assert not written & {"unlabeled/copy.png", "labeled/dog/copy.png"}


def test_copies_of_eval_images_fail_the_run_with_on_eval_duplicates_fail(tmp_path):
    root = write_image_folder(tmp_path / "data")
    copy_eval_image_into_training(root)
    with pytest.raises(ValueError, match=r"2 images in train/unlabeled are byte-for-byte copies of eval images "
                                         r"\(data.on_eval_duplicates: fail\): "
                                         r"labeled/dog/copy.png \(= test/cat/0.png\), unlabeled/copy.png"):
        ingest(data_section(path=str(root), on_eval_duplicates="fail"), str(tmp_path / "examples"),
               str(tmp_path / "report"), direct_pipeline)


def test_copies_of_eval_images_are_kept_and_still_named_with_on_eval_duplicates_keep(tmp_path):
    root = write_image_folder(tmp_path / "data")
    copy_eval_image_into_training(root)
    report = ingest(data_section(path=str(root), on_eval_duplicates="keep"), str(tmp_path / "examples"),
                    str(tmp_path / "report"), direct_pipeline)
    assert (report["eval_duplicates"]["policy"], report["eval_duplicates"]["count"]) == ("keep", 2)
    assert report["splits"]["unlabeled"] == {"read": 9, "written": 9, "skipped": 0, "duplicates_of_eval": 1}
    assert report["splits"]["train"]["written"] == 13
    assert len(read_split(str(tmp_path / "examples"), "train")) == 13


def test_min_eval_per_class_fails_tfrecord_ingestion_naming_the_classes(tmp_path):
    """The folder check runs before the pipeline (test_cli.py); TFRecords are counted while ingesting."""
    for name, eval_labels in (("few", [2, 0, 1, 1]), ("missing", [0, 1, 1])):
        root = tmp_path / name
        write_tfrecords(root, "unlabeled", [-1] * 5)
        write_tfrecords(root, "train", [0, 1, 2, 1])
        write_tfrecords(root, "eval", eval_labels)
    data = data_section(source="tfrecord", path=str(tmp_path / "few"), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"fewer than evaluation.min_eval_per_class=2 images of the classes "
                                         r"\{'a': 1, 'c': 1\}"):
        ingest(data, str(tmp_path / "examples"), str(tmp_path / "report"), direct_pipeline, min_eval_per_class=2)
    data = data_section(source="tfrecord", path=str(tmp_path / "missing"), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"has no images of the classes \['c'\]"):
        ingest(data, str(tmp_path / "examples2"), str(tmp_path / "report2"), direct_pipeline, min_eval_per_class=1)


def folder_fingerprint(root):
    return input_fingerprint(plan_source(data_section(path=str(root))), str(root))


def test_the_input_fingerprint_changes_with_any_file_and_only_then(tmp_path):
    root = write_image_folder(tmp_path / "data")
    first = folder_fingerprint(root)
    assert first["files"] == 26 and first["bytes"] == sum(path.stat().st_size for path in root.rglob("*.*"))
    assert folder_fingerprint(root) == first  # the same folder, read again
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, moved)  # copy2: the same sizes and modification times at another path
    assert folder_fingerprint(moved) == first  # relative paths are hashed

    touched = root / "unlabeled" / "u0.jpg"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after_touch = folder_fingerprint(root)
    assert after_touch["fingerprint"] != first["fingerprint"] and after_touch["files"] == 26
    (root / "unlabeled" / "new.png").write_bytes(encode("RGB", seed=4242))
    after_add = folder_fingerprint(root)
    assert after_add["files"] == 27 and after_add["fingerprint"] not in {first["fingerprint"],
                                                                         after_touch["fingerprint"]}
    (root / "labeled" / "cat" / "0.png").unlink()
    after_remove = folder_fingerprint(root)
    assert after_remove["files"] == 26 and after_remove["fingerprint"] != after_add["fingerprint"]
    (root / "unlabeled" / "notes.txt").write_text("ignored files are part of the input too")
    assert folder_fingerprint(root)["fingerprint"] != after_remove["fingerprint"]


def test_the_input_fingerprint_of_tfrecords_changes_with_a_file(tmp_path):
    root = tmp_path / "records"
    for split, labels in (("unlabeled", [-1] * 3), ("train", [0, 1]), ("eval", [1, 0])):
        write_tfrecords(root, split, labels)
    data = data_section(source="tfrecord", path=str(root), class_names=["a", "b"])
    first = input_fingerprint(plan_source(data), str(root))
    assert first["files"] == 3 and input_fingerprint(plan_source(data), str(root)) == first
    shutil.copy(root / "unlabeled" / "part-0.tfrecord.gz", root / "unlabeled" / "part-1.tfrecord.gz")
    after_add = input_fingerprint(plan_source(data), str(root))
    assert after_add["files"] == 4 and after_add["fingerprint"] != first["fingerprint"]


def test_exif_orientation_is_not_applied_as_the_readme_says():
    """A JPEG stored red on the left, blue on the right, tagged EXIF Orientation 6 (a viewer turns it a
    quarter clockwise: red on top). `decode_image`, the decoder of training and of serving_images, keeps
    it as stored."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20, 0] = pixels[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    encoded = buffer.getvalue()
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(encoded))).size == (20, 40)  # what a viewer shows
    assert image_problem(encoded, MAX_PIXELS) is None
    decoded = decode_image(tf.constant(encoded), 24).numpy()
    left, right = decoded[:, :8].mean(axis=(0, 1)), decoded[:, -8:].mean(axis=(0, 1))
    assert left[0] > 0.8 > left[2] and right[2] > 0.8 > right[0]  # still red left, blue right: not turned


def run_executor(tmp_path, exec_properties):
    """ImageExampleGen's executor on exec_properties; returns the Examples artifact and the report it wrote."""
    examples, report = standard_artifacts.Examples(), IngestReport()
    examples.uri, report.uri = str(tmp_path / "examples"), str(tmp_path / "report")
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=["--runner=DirectRunner"],
                                                          tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    example_gen_executor.Executor(context).Do({}, {"examples": [examples], "report": [report]}, exec_properties)
    with open(tmp_path / "report" / REPORT_FILE) as handle:
        return examples, json.load(handle)


def counting_plans(monkeypatch):
    """Counts every plan_source call of the driver and of ingest (each one lists the whole data folder)."""
    calls = []

    def counted(data):
        calls.append(data)
        return plan_source(data)

    monkeypatch.setattr(driver, "plan_source", counted)
    monkeypatch.setattr(ingest_module, "plan_source", counted)
    return calls


def test_the_executor_rebuilds_the_typed_data_config_and_reads_the_drivers_plan(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "data")
    config = DataConfig(path="/replaced/by/data_path", max_bad_fraction=0.2, on_eval_duplicates="keep")
    properties = {"data_config": json.dumps(config.to_dict()), "data_path": str(root), "min_eval_per_class": 1}
    assert driver.data_config_of(properties) == DataConfig(path=str(root), max_bad_fraction=0.2,
                                                           on_eval_duplicates="keep")
    calls = counting_plans(monkeypatch)
    fingerprint = driver.fingerprint_exec_property(properties)  # what the driver adds before the cache check
    examples, report = run_executor(tmp_path, dict(properties, **{INPUT_FINGERPRINT_PROPERTY: fingerprint}))
    assert len(calls) == 1  # the driver's listing; the executor took its plan
    assert report["location"] == str(root) and report["eval_duplicates"]["policy"] == "keep"
    assert report["input"] == json.loads(fingerprint)
    assert examples.get_string_custom_property(INPUT_FINGERPRINT_PROPERTY) == json.loads(fingerprint)["fingerprint"]
    assert driver.planned_source(driver.data_config_of(properties), fingerprint) is None  # taken once


def test_the_executor_alone_lists_the_data_once(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "data")
    calls = counting_plans(monkeypatch)
    _, report = run_executor(tmp_path, {"data_config": json.dumps(DataConfig(path=str(root)).to_dict())})
    assert len(calls) == 1 and report["splits"]["train"]["written"] == 12


def test_an_executor_plans_anew_when_the_data_config_is_not_the_one_fingerprinted(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "data")
    properties = {"data_config": json.dumps(DataConfig(path=str(root)).to_dict())}
    fingerprint = driver.fingerprint_exec_property(properties)
    calls = counting_plans(monkeypatch)
    changed = {"data_config": json.dumps(DataConfig(path=str(root), eval_fraction=0.5).to_dict()),
               INPUT_FINGERPRINT_PROPERTY: fingerprint}
    run_executor(tmp_path, changed)
    assert len(calls) == 1 and calls[0].eval_fraction == 0.5


@pytest.mark.parametrize("data_config, key", [
    ({"path": "/data", "colour": "red"}, "data.colour"),
    ({"path": "/data", "eval_fraction": 1.5}, "data.eval_fraction"),
    ({"source": "tfrecord", "path": "/data"}, "data.class_names"),
])
def test_a_bad_data_config_parameter_fails_the_executor_naming_the_key(tmp_path, data_config, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        run_executor(tmp_path, {"data_config": json.dumps(data_config)})


def test_a_source_without_its_path_fails_naming_data_path(tmp_path):
    with pytest.raises(ConfigError, match="config key 'data.path': is required when data.source is 'tfrecord'"):
        plan_source(DataConfig(source="tfrecord", class_names=["a", "b"]))

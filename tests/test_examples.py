"""What the Trainers read from examples other than selfsup's ImageExampleGen's (trainer/examples.py): feature
keys, class names from a setting or from the labels, split sizes counted, unlabeled splits by setting, the label
budget's image-hash keys; each missing piece is an error naming it."""

import io
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import contract, data, run
from trainer import log as log_module
from trainer.examples import read_training_examples
from trainer.hparams import ConfigError, TrainingConfig

IMAGE_KEY, LABEL_KEY = "image/encoded", "image/class/label"
TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="resnet10_cifar", encoder_width=8, image_size=8, batch_size=8, finetune_batch_size=8,
            linear_epochs=1, finetune_epochs=0, pretrain_epochs=0, precision="float32",
            image_feature=IMAGE_KEY, label_feature=LABEL_KEY)


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "PNG")
    return encoded.getvalue()


def example(seed: int, label=None, image_key=IMAGE_KEY, label_key=LABEL_KEY) -> bytes:
    feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(seed)]))}
    if label is not None:
        feature[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_artifact(root, splits) -> str:
    """An Examples artifact as TFX's ExampleGens write it: root/Split-<name>/data_tfrecord-00000-of-00001.gz."""
    for name, records in splits.items():
        os.makedirs(root / f"Split-{name}", exist_ok=True)
        with tf.io.TFRecordWriter(str(root / f"Split-{name}" / "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for record in records:
                writer.write(record)
    return str(root)


def labeled(count, classes=3, start=0, **keys):
    return [example(start + index, label=index % classes, **keys) for index in range(count)]


def read(uri, train=("train",), eval_splits=("eval",), **settings):
    return read_training_examples([f"{uri}/Split-{name}/*" for name in train],
                                  [f"{uri}/Split-{name}/*" for name in eval_splits],
                                  TrainingConfig(**dict(TINY, **settings)))


def test_import_example_gen_output_is_counted_and_its_classes_come_from_the_labels(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=log_module.NAME)
    uri = write_artifact(tmp_path, {"train": labeled(12), "eval": labeled(6, start=100)})

    examples = read(uri)

    assert examples.splits == {"train": ["train"], "eval": ["eval"], "unlabeled": []}
    assert examples.sizes == {"train": 12, "eval": 6, "unlabeled": 0}
    assert examples.class_names == ["0", "1", "2"]
    assert examples.unlabeled_and_train_files == [f"{uri}/Split-train/*"]
    log = "\n".join(record.getMessage() for record in caplog.records
                    if record.name.startswith(log_module.NAME + ".") and record.levelno == logging.INFO)
    assert "have no 'unlabeled' split" in log and "training.unlabeled_splits" in log
    assert "no ingest_report.json beside the splits" in log and "counted their examples" in log
    assert "3 classes from the largest label" in log
    assert read(uri, class_names=["cat", "dog", "frog"]).class_names == ["cat", "dog", "frog"]


def test_unlabeled_splits_are_chosen_by_the_setting(tmp_path):
    unlabeled = [example(200 + index) for index in range(5)]  # no label feature at all
    uri = write_artifact(tmp_path, {"extra": unlabeled, "train": labeled(6), "test": labeled(3, start=50)})

    examples = read(uri, eval_splits=("test",), unlabeled_splits=["extra"])

    assert examples.splits["unlabeled"] == ["extra"] and examples.sizes["unlabeled"] == 5
    assert examples.unlabeled_and_train_files == [f"{uri}/Split-extra/*", f"{uri}/Split-train/*"]
    with pytest.raises(ConfigError, match=r"'training.unlabeled_splits': split 'nope' is not in the examples .* "
                                          r"their splits are \['extra', 'test', 'train'\]"):
        read(uri, eval_splits=("test",), unlabeled_splits=["nope"])
    with pytest.raises(ConfigError, match="'training.unlabeled_splits': split 'test' is an eval split"):
        read(uri, eval_splits=("test",), unlabeled_splits=["test"])
    with pytest.raises(ValueError, match="split \\['train'\\] .* is both a train and an eval split"):
        read(uri, eval_splits=("train",))


def test_an_unlabeled_split_is_read_when_there_is_one(tmp_path):
    uri = write_artifact(tmp_path, {"unlabeled": [example(300)], "train": labeled(3), "eval": labeled(3)})
    assert read(uri).splits["unlabeled"] == ["unlabeled"]
    assert read(uri, unlabeled_splits=[]).splits["unlabeled"] == []


@pytest.mark.parametrize("records, settings, message", [
    (labeled(3, image_key="jpeg"), {}, r"split 'train' .* no encoded image bytes under 'image/encoded' "
                                       r"\(training.image_feature\); .* features are \{'image/class/label': "
                                       r"'int64_list', 'jpeg': 'bytes_list'\}"),
    (labeled(3), {"label_feature": "class"}, r"split 'train' .* no int64 label under 'class' "
                                             r"\(training.label_feature\)"),
    (labeled(3) + [example(9)], {}, r"split 'train' .* has examples without an int64 label under "
                                    r"'image/class/label' .*training.label_feature"),
    (labeled(3), {"class_names": ["a", "b"]}, r"split 'train' .* has label 2, but the 2 class names \['a', 'b'\] "
                                              r"\(training.class_names\) stop at label 1"),
    ([example(index, label=0) for index in range(3)], {}, "give 1 class; a classifier needs at least two"),
])
def test_a_missing_piece_is_an_error_naming_it(tmp_path, records, settings, message):
    uri = write_artifact(tmp_path, {"train": records, "eval": labeled(3, classes=1, start=40)})
    with pytest.raises(ValueError, match=message):
        read(uri, **settings)


def test_a_split_without_files_and_class_names_that_contradict_class_names_json(tmp_path):
    uri = write_artifact(tmp_path, {"train": labeled(3), "eval": labeled(3)})
    with pytest.raises(ValueError, match=r"split 'test' has no files \(.*Split-test/\*\)"):
        read(uri, eval_splits=("test",))
    (tmp_path / contract.CLASS_NAMES_FILE).write_text(json.dumps(["a", "b", "c"]))
    assert read(uri).class_names == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"'training.class_names': \['x', 'y', 'z'\] differ from the class names "
                                          r"the examples recorded in .*class_names.json: \['a', 'b', 'c'\]"):
        read(uri, class_names=["x", "y", "z"])


@pytest.mark.parametrize("settings, key", [
    ({"image_feature": " "}, "training.image_feature"),
    ({"label_feature": IMAGE_KEY}, "training.label_feature"),
    ({"class_names": ["only"]}, "training.class_names"),
    ({"class_names": ["a", "a"]}, "training.class_names"),
    ({"unlabeled_splits": ["x", "x"]}, "training.unlabeled_splits"),
])
def test_bad_settings_name_their_key(settings, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        TrainingConfig(**dict(TINY, **settings))


def test_the_label_budget_of_examples_without_a_path_keys_them_by_a_hash_of_the_image(tmp_path):
    records = labeled(30)
    uri = write_artifact(tmp_path, {"train": records})
    keys = data.FeatureKeys(IMAGE_KEY, LABEL_KEY)
    files = [f"{uri}/Split-train/*"]

    budgets = {size: data.label_budget_paths(files, size, keys) for size in (2, 5)}

    assert len(budgets[2]) == 6 and len(budgets[5]) == 15 and set(budgets[2]) <= set(budgets[5])
    assert all(key.startswith(data.IMAGE_HASH_KEY_PREFIX.encode()) for key in budgets[5])
    assert list(data.budget_keys(tf.constant([records[0], records[0]]), keys).numpy()) == [
        data.budget_keys(tf.constant(records[:1]), keys).numpy()[0]] * 2  # the key depends only on the bytes
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in data.labeled_dataset(
        files, 64, 8, 0, shuffle=False, keep_paths=budgets[2], keys=keys)])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_the_trainer_trains_and_exports_on_import_example_gen_examples(tmp_path):
    """The baseline role end to end (TFX's entry point, run_fn) on such examples; serving_default reads the image
    under its own key."""
    uri = write_artifact(tmp_path / "examples", {"train": labeled(24), "eval": labeled(9, start=60)})
    serving_dir = tmp_path / "model" / "Format-Serving"
    config = TrainingConfig(**dict(TINY, labels_per_class=4))

    run.run_fn(FnArgs(train_files=[f"{uri}/Split-train/*"], eval_files=[f"{uri}/Split-eval/*"],
                      serving_model_dir=str(serving_dir), model_run_dir=str(tmp_path / "model_run"),
                      custom_config=dict(config.baseline_dict(), role="baseline"), base_model=None))

    with open(tmp_path / "model" / run.HISTORY_FILE) as handle:
        record = json.load(handle)
    assert record["class_names"] == ["0", "1", "2"] and record["labeled_train_images"] == 12
    served = tf.saved_model.load(str(serving_dir)).signatures["serving_default"](
        examples=tf.constant([example(7, label=1), example(8)]))
    assert served["probabilities"].shape == (2, 3)

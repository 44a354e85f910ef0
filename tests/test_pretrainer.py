"""The Pretrainer's encoder artifact: what it holds, how it is reused, its embeddings, and the label budget.

- `serving_embeddings` gives the encoder's L2-normalised features of the image decoded as in training;
- a saved encoder loads with the same weights, and one of another architecture is refused naming both;
- the Pretrainer (role "pretrainer" of the real Trainer entry point) exports the artifact, and
  `training.init_encoder` with `pretrain_epochs: 0` hands on exactly those weights;
- `selfsup embed` writes one vector per decodable image as .npz and .parquet;
- the label budget keeps nested, hash-chosen subsets per class (trainer/data.py).
"""

import hashlib
import json
import os

import apache_beam as beam
import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from image_samples import encode

from components.image_example_gen.ingest import ingest, make_example
from pipeline import cli
from trainer import contract, data, encoder_artifact, pretrain, run
from trainer.encoders import build_encoder
from trainer.hparams import ConfigError, TrainingConfig

TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="small_cnn", encoder_width=8, image_size=32, batch_size=16, projection_dim=8,
            projection_hidden_dim=8, knn_k=3, monitor_every_epochs=1, linear_epochs=1, finetune_epochs=1)


def image_bytes(count, seed=0):
    return [encode("RGB", size=(20 + index, 16), seed=seed + index) for index in range(count)]


def saved_encoder(folder, config, is_sequence=False):
    """A freshly initialised encoder saved as the Pretrainer saves it; returns (encoder, artifact folder)."""
    encoder = build_encoder(config.encoder, config.image_size, config.encoder_width)
    artifact = folder / "Pretrainer" / "model" / "1"
    encoder_artifact.save_encoder(encoder, encoder_artifact.describe(config, "examples", 10), {"history": {}},
                                  str(artifact), str(artifact / "Format-Serving"), is_sequence)
    return encoder, artifact


@pytest.mark.parametrize("name, is_sequence", [("small_cnn", False), ("sequence_cnn", True)])
def test_serving_embeddings_are_the_encoders_normalised_features(tmp_path, name, is_sequence):
    config = TrainingConfig(**dict(TINY, encoder=name))
    encoder, artifact = saved_encoder(tmp_path, config, is_sequence)
    encoded = image_bytes(3)
    signature = tf.saved_model.load(str(artifact / "Format-Serving")).signatures[
        encoder_artifact.EMBEDDINGS_SIGNATURE]
    served = signature(images=tf.constant(encoded))[encoder_artifact.EMBEDDINGS_OUTPUT].numpy()
    features = encoder(data.decode_image_batch(tf.constant(encoded), config.image_size), training=False)
    if is_sequence:
        features = tf.reduce_mean(features, axis=1)
    np.testing.assert_allclose(served, tf.math.l2_normalize(features, axis=-1).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_embeddings: the batch is empty"):
        signature(images=tf.constant([], tf.string))


def test_a_saved_encoder_loads_with_its_weights_and_another_architecture_is_refused_naming_both(tmp_path):
    config = TrainingConfig(**TINY)
    encoder, artifact = saved_encoder(tmp_path, config)
    for path in (artifact, artifact / "Format-Serving"):  # the artifact folder or its serving folder
        loaded = encoder_artifact.load_encoder(str(path), config, "training.init_encoder")
        assert encoder_artifact.weights_digest(loaded) == encoder_artifact.weights_digest(encoder)
    description = encoder_artifact.read_description(str(artifact))
    assert description["weights_digest"] == encoder_artifact.weights_digest(encoder)
    assert (description["encoder"], description["encoder_width"], description["image_size"]) == ("small_cnn", 8, 32)
    wider = TrainingConfig(**dict(TINY, encoder_width=16, image_size=40))
    with pytest.raises(ConfigError, match=r"training.init_encoder.*training.encoder_width 16 vs 8, "
                                          r"training.image_size 40 vs 32"):
        encoder_artifact.load_encoder(str(artifact), wider, "training.init_encoder")
    with pytest.raises(ValueError, match="is not a selfsup encoder"):
        encoder_artifact.artifact_root(str(tmp_path))


def write_folder(root, per_class=8, unlabeled=24):
    seed = 100
    for split, count in (("labeled", per_class), ("test", 4)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                seed += 1
                (root / split / name / f"{index}.png").write_bytes(encode("RGB", size=(32, 32), seed=seed))
    (root / "unlabeled").mkdir(parents=True)
    for index in range(unlabeled):
        (root / "unlabeled" / f"u{index}.png").write_bytes(encode("RGB", size=(32, 32), seed=index))
    return root


@pytest.fixture(scope="module")
def examples_uri(tmp_path_factory):
    """An Examples artifact of 24 unlabeled, 16 train and 8 eval images, written by the real ingest."""
    root = tmp_path_factory.mktemp("pretrainer")
    folder = write_folder(root / "data")
    uri = root / "ImageExampleGen" / "examples" / "1"
    settings = dict(source="folder", path=str(folder), class_names=None, tfds_name=None, tfds_data_dir=None,
                    tfds_splits=None, eval_fraction=0.2, max_bad_fraction=0.0, max_image_pixels=1_000_000,
                    follow_external_links=False, on_eval_duplicates="drop")
    ingest(settings, str(uri), str(root / "ImageExampleGen" / "report" / "1"),
           lambda: beam.Pipeline(argv=["--runner=DirectRunner"]))
    return str(uri)


def pretrainer_run(examples_uri, folder, **training):
    config = TrainingConfig(**dict(TINY, **training))
    serving_dir = folder / "model" / "1" / "Format-Serving"
    run.train_and_export(dict(config.pretraining_dict(), role="pretrainer"), data.split_files(examples_uri, "train"),
                         str(serving_dir), str(folder / "model_run" / "1"), str(folder / "backup"))
    return serving_dir.parent


def test_the_pretrainer_exports_the_encoder_and_init_encoder_hands_its_weights_on(examples_uri, tmp_path):
    first = pretrainer_run(examples_uri, tmp_path / "first", pretrain_epochs=1)
    assert sorted(os.listdir(first)) == ["Format-Serving", contract.AUGMENTED_VIEWS_FILE, "encoder.json",
                                         "encoder.keras", "history.json"]
    # A few pretraining images, each row: as decoded, then its two views from the pretraining augmenter.
    grid = tf.io.decode_png(tf.io.read_file(str(first / contract.AUGMENTED_VIEWS_FILE))).numpy()
    size = TINY["image_size"]
    assert grid.shape == (pretrain.AUGMENTED_VIEW_ROWS * size, 3 * size, 3) and grid.dtype == np.uint8
    for row in range(pretrain.AUGMENTED_VIEW_ROWS):
        original, *views = (grid[row * size:(row + 1) * size, column * size:(column + 1) * size]
                            for column in range(3))
        assert all(not np.array_equal(view, original) for view in views) and not np.array_equal(*views)
    with open(first / "history.json") as handle:
        record = json.load(handle)
    assert record["role"] == "pretrainer" and len(record["history"]["pretrain/loss"]) == 1
    assert record["timings"]["pretrain_seconds"] > 0
    assert record["config"] == TrainingConfig(**dict(TINY, pretrain_epochs=1)).pretraining_dict()  # for the report
    description = encoder_artifact.read_description(str(first))
    assert description["pretraining_images"] == 24 + 16 and description["init_encoder"] is None

    # Fine-tune an earlier encoder as it is: pretrain_epochs 0 from init_encoder keeps its weights.
    second = pretrainer_run(examples_uri, tmp_path / "second", pretrain_epochs=0, init_encoder=str(first))
    reused = encoder_artifact.read_description(str(second))
    assert not (second / contract.AUGMENTED_VIEWS_FILE).exists()  # nothing was pretrained
    assert reused["weights_digest"] == description["weights_digest"] and reused["init_encoder"] == str(first)
    # Continuing pretraining from it changes them.
    third = pretrainer_run(examples_uri, tmp_path / "third", pretrain_epochs=1, init_encoder=str(first))
    assert encoder_artifact.read_description(str(third))["weights_digest"] != description["weights_digest"]


def test_a_mismatched_init_encoder_fails_before_any_work_naming_both_settings(tmp_path, capsys):
    _, artifact = saved_encoder(tmp_path, TrainingConfig(**TINY))
    folder = write_folder(tmp_path / "data", per_class=30)
    config = tmp_path / "config.yaml"
    config.write_text(f"training:\n  encoder_width: 16\n  batch_size: 16\n  init_encoder: {artifact}\n"
                      "evaluation:\n  min_eval_per_class: 4\n")
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(folder), "--output", str(output), "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "training.init_encoder" in error and "training.encoder_width 16 vs 8" in error and str(artifact) in error
    assert not (output / "tfx").exists()


def test_embed_writes_one_vector_per_decodable_image_as_npz_and_parquet(tmp_path, capsys):
    config = TrainingConfig(**TINY)
    _, artifact = saved_encoder(tmp_path, config)
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    encoded = image_bytes(3, seed=7)
    for index, content in enumerate(encoded):
        (images / ("nested" if index else ".") / f"{index}.png").write_bytes(content)
    (images / "broken.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("not read")
    expected = tf.saved_model.load(str(artifact / "Format-Serving")).signatures["serving_embeddings"](
        images=tf.constant(encoded))["embeddings"].numpy()

    assert cli.main(["embed", "--model", str(artifact), "--data", str(images), "--output",
                     str(tmp_path / "vectors.npz")]) == 0
    out = capsys.readouterr().out
    assert "3 embeddings of dimension 8" in out and "1 images skipped, 1 files ignored" in out
    assert "skipped broken.jpg: not a decodable image" in out
    saved = np.load(tmp_path / "vectors.npz")
    assert list(saved["paths"]) == ["0.png", "nested/1.png", "nested/2.png"]
    np.testing.assert_allclose(saved["embeddings"], expected, rtol=1e-5, atol=1e-6)

    # --model may be a run's output folder: summary.json names its pretrained encoder.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"timings": {"pretrainer": {"model": str(artifact)}}}))
    assert cli.main(["embed", "--model", str(run_dir), "--data", str(images), "--output",
                     str(tmp_path / "vectors.parquet"), "--batch-size", "2"]) == 0
    table = pq.read_table(tmp_path / "vectors.parquet")
    assert table.column("path").to_pylist() == ["0.png", "nested/1.png", "nested/2.png"]
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), expected, rtol=1e-5, atol=1e-6)

    assert cli.main(["embed", "--model", str(artifact), "--data", str(images), "--output",
                     str(tmp_path / "vectors.csv")]) == 2
    assert "must end with one of ['.parquet', '.npz']" in capsys.readouterr().err


def write_records(path, rows):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for index, (source_id, label) in enumerate(rows):
            writer.write(make_example(encode("RGB", size=(8, 8), seed=index), label, source_id))


def test_label_budget_keeps_nested_hash_chosen_subsets_per_class(tmp_path):
    rows = [(f"labeled/{name}/{index}.png", label) for label, name in enumerate(("cat", "dog", "emu"))
            for index in range(10)]
    write_records(tmp_path / "train.gz", rows)
    files = [str(tmp_path / "train.gz")]
    kept = {budget: data.label_budget_paths(files, budget) for budget in (2, 5, 50)}
    for budget, paths in kept.items():
        labels = [label for source_id, label in rows if source_id.encode() in paths]
        assert sorted(labels) == sorted([0, 1, 2] * min(budget, 10))
    assert set(kept[2]) < set(kept[5]) < set(kept[50]) and len(kept[50]) == 30
    # The smallest SHA-256 of the path wins: the same rule on every machine.
    cats = sorted((hashlib.sha256(source_id.encode()).digest(), source_id) for source_id, label in rows if label == 0)
    assert {path for path in kept[2] if b"/cat/" in path} == {source_id.encode() for _, source_id in cats[:2]}
    # The Trainers' dataset holds exactly the budget's images.
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in data.labeled_dataset(
        files, 4, 8, 0, shuffle=True, keep_paths=kept[5])])
    assert sorted(labels) == [0] * 5 + [1] * 5 + [2] * 5


def test_a_loaded_encoder_takes_the_current_precision_with_the_saved_weights(tmp_path):
    config = TrainingConfig(**TINY)
    encoder, artifact = saved_encoder(tmp_path, config)  # saved under float32
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        loaded = encoder_artifact.load_encoder(str(artifact), config, "training.init_encoder")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert {layer.dtype_policy.name for layer in loaded.layers if layer.weights} == {"mixed_bfloat16"}
    assert encoder_artifact.weights_digest(loaded) == encoder_artifact.weights_digest(encoder)

"""Distribution and fault tolerance of the Trainer (CPU only).

- the strategy choice, the chief, the per-worker output folders and the backup location;
- MirroredStrategy over the two logical CPUs of conftest.py against the default strategy: one
  train_step of the real SimCLR and SimSiam models on the same global batch;
- two MultiWorkerMirroredStrategy worker processes on 127.0.0.1 running the whole Trainer;
- a Trainer killed during pretraining and started again, and a Trainer whose loss becomes NaN.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import apache_beam as beam
import keras
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from conftest import fit_one_step, log_text, two_cpu_mirrored_strategy
from tfx.components.trainer.fn_args_utils import FnArgs

from components.image_example_gen.ingest import ingest
from trainer import checkpoints, contract, data, distribute, encoder_artifact, keras_fixes, pretrain, run
from trainer.encoders import build_encoder
from trainer.examples import TrainingExamples
from trainer.hparams import TrainingConfig
from trainer.methods import build_method
from trainer.monitors import NanLossError

TINY_MODEL = dict(encoder="small_cnn", encoder_width=8, image_size=32, projection_dim=8, projection_hidden_dim=8,
                  predictor_hidden_dim=4)
# Pretraining reads 48 images (24 unlabeled + 24 train): 3 steps of 16 per epoch.
TINY_TRAINING = dict(TINY_MODEL, fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
                     method="simclr", batch_size=16, finetune_batch_size=19, linear_epochs=1,
                     finetune_epochs=1, knn_k=3, monitor_every_epochs=1, strategy="auto")
SUBPROCESS_TIMEOUT_SECONDS = 300

# What the TFX executor does in the Trainer's process, with the FnArgs fields run_fn reads.
RUN_TRAINER = """
import json, sys, types
from trainer.run import run_fn
run_fn(types.SimpleNamespace(**json.loads(sys.argv[1])))
"""


# --- Strategy choice, chief, output folders ------------------------------------------------------

@pytest.mark.parametrize(
    "strategy, tpu_address, gpu_count, workers, expected",
    [
        ("auto", None, 0, 0, "default"),
        ("auto", None, 1, 1, "default"),
        ("auto", None, 2, 0, "mirrored"),
        ("auto", None, 8, 1, "mirrored"),
        ("auto", None, 0, 2, "multi_worker"),
        ("auto", None, 4, 3, "multi_worker"),
        ("auto", "grpc://10.0.0.2:8470", 0, 0, "tpu"),
        ("auto", "local", 2, 2, "tpu"),
        ("auto", "", 2, 0, "mirrored"),
        ("default", None, 4, 2, "default"),
        ("one_device", None, 4, 0, "one_device"),
        ("mirrored", None, 0, 0, "mirrored"),
        ("multi_worker", None, 0, 1, "multi_worker"),
        ("tpu", "local", 0, 0, "tpu"),
    ],
)
def test_strategy_choice(strategy, tpu_address, gpu_count, workers, expected):
    assert distribute.choose_strategy_name(strategy, tpu_address, gpu_count, workers) == expected


def tf_config(task_type=None, index=0, workers=2, chief=False):
    cluster = {"worker": [f"127.0.0.1:{2000 + number}" for number in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:1999"]
    config = {"cluster": cluster}
    if task_type is not None:
        config["task"] = {"type": task_type, "index": index}
    return json.dumps(config)


@pytest.mark.parametrize(
    "environment, workers, chief",
    [
        (None, 0, True),
        ("", 0, True),
        (tf_config("worker", 0, workers=1), 1, True),
        (tf_config("worker", 0), 2, True),
        (tf_config("worker", 1), 2, False),
        (tf_config("worker", 0, chief=True), 3, False),
        (tf_config("chief", 0, chief=True), 3, True),
        (tf_config("evaluator", 0), 2, False),
        (tf_config(None), 2, True),
    ],
    ids=["no TF_CONFIG", "empty", "one worker", "worker 0 of 2", "worker 1 of 2", "worker 0 beside a chief",
         "chief", "evaluator", "no task"],
)
def test_chief_and_worker_count(monkeypatch, environment, workers, chief):
    if environment is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", environment)
    assert distribute.worker_count() == workers
    assert distribute.is_chief() is chief


def test_bad_tf_config_is_an_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.is_chief()


def test_build_strategy_logs_the_choice_and_reuses_strategies(monkeypatch, caplog):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.build_strategy("auto") is tf.distribute.get_strategy()
    assert "distribution strategy: default" in log_text(caplog)
    caplog.clear()
    one_device = distribute.build_strategy("one_device")
    assert isinstance(one_device, tf.distribute.OneDeviceStrategy)
    assert distribute.build_strategy("one_device") is one_device
    assert "one_device (OneDeviceStrategy), replicas: 1" in log_text(caplog)
    with pytest.raises(ValueError, match="unknown strategy 'two_devices'"):
        distribute.build_strategy("two_devices")


def test_datasets_are_sharded_by_data():
    dataset = distribute.shard_by_data(tf.data.Dataset.range(4).batch(2))
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_only_the_chief_writes_to_the_given_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", tf_config("worker", 0))
    with distribute.writable_folders(model=str(tmp_path / "model"), logs=str(tmp_path / "logs")) as folders:
        assert folders == {"model": str(tmp_path / "model"), "logs": str(tmp_path / "logs")}
    monkeypatch.setenv("TF_CONFIG", tf_config("worker", 1))
    with distribute.writable_folders(model=str(tmp_path / "model"), logs=str(tmp_path / "logs")) as folders:
        assert not folders["model"].startswith(str(tmp_path)) and folders["model"] != folders["logs"]
        os.makedirs(folders["model"])
        scratch = os.path.dirname(folders["model"])
    assert not os.path.exists(scratch)


# --- Backups ---------------------------------------------------------------------------------------

def test_backup_root_is_stable_across_executions_and_keyed_by_inputs(tmp_path):
    config = dict(TINY_TRAINING, role="candidate")
    first = checkpoints.backup_root(str(tmp_path / "CandidateTrainer" / "model_run" / "7"), "/x/examples/3", config)
    retry = checkpoints.backup_root(str(tmp_path / "CandidateTrainer" / "model_run" / "9"), "/x/examples/3", config)
    assert first == retry
    assert os.path.dirname(first) == str(tmp_path / "CandidateTrainer" / "backup")
    for examples, changed_config in (("/x/examples/4", config), ("/x/examples/3", dict(config, role="baseline")),
                                     ("/x/examples/3", dict(config, pretrain_epochs=3))):
        assert checkpoints.backup_root(str(tmp_path / "CandidateTrainer" / "model_run" / "7"), examples,
                                       changed_config) != first


class StopAtEpoch(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the start of an epoch, as a kill would end the process."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"stopped at epoch {epoch}")


def small_regression_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def test_epoch_backup_resumes_each_fit_and_keeps_the_whole_history(tmp_path, caplog):
    features = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    targets = features @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
    backup_dir = str(tmp_path / "backup" / "key")

    model = small_regression_model()
    uninterrupted = model.fit(features, targets, epochs=4, batch_size=8, verbose=0, shuffle=False).history["loss"]

    model = small_regression_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(features, targets, epochs=4, batch_size=8, verbose=0, shuffle=False,
                  callbacks=[checkpoints.EpochBackup(backup_dir, backup_dir, "regression"), StopAtEpoch(2)])
    model = small_regression_model()
    backup = checkpoints.EpochBackup(backup_dir, backup_dir, "regression")
    resumed = model.fit(features, targets, epochs=4, batch_size=8, verbose=0, shuffle=False, callbacks=[backup])
    assert "resuming regression at epoch 2" in log_text(caplog)
    caplog.clear()
    assert resumed.epoch == [0, 1, 2, 3]
    np.testing.assert_allclose(resumed.history["loss"], uninterrupted, rtol=1e-5)

    # A second fit with the same callback has its own backup, and does not inherit the restored epoch.
    second = model.fit(features, targets, epochs=2, batch_size=8, verbose=0, callbacks=[backup])
    assert second.epoch == [0, 1]
    assert sorted(os.listdir(backup_dir)) == ["regression-fit-1", "regression-fit-2"]
    assert sorted(os.listdir(os.path.join(backup_dir, "regression-fit-1"))) == [
        checkpoints.METADATA_FILE, "epoch-0004.weights.h5"]

    # A completed fit restores its final state and runs no epoch.
    model = small_regression_model()
    completed = model.fit(features, targets, epochs=4, batch_size=8, verbose=0,
                          callbacks=[checkpoints.EpochBackup(backup_dir, backup_dir, "regression")])
    assert completed.epoch == [0, 1, 2, 3] and "resuming regression at epoch 4" in log_text(caplog)
    checkpoints.remove_backup(backup_dir)
    assert os.listdir(tmp_path) == []  # the emptied backup folder is removed too


# --- MirroredStrategy (two logical CPUs) against the default strategy --------------------------------

@pytest.fixture(scope="module")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs of conftest.py for the whole module, with its own
    collective key range (conftest.two_cpu_mirrored_strategy)."""
    return two_cpu_mirrored_strategy(collective_key_base=1_000_000)


def build_ssl_model(strategy, config, num_classes=None):
    """The configured method with identity augmentation, built under `strategy` from the seed."""
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        encoder = build_encoder(config.encoder, config.image_size, config.encoder_width)
        model = build_method(config, encoder, keras.layers.Identity(), False, make_encoder=None, steps_per_epoch=1,
                             num_classes=num_classes)
    return model


def one_training_step(strategy, config, batch, initial_weights, num_classes=None):
    """Trains one step on `batch` (images, or images and labels) from `initial_weights`.

    Returns:
      (model, loss): the model after the step and the step's loss.
    """
    model = build_ssl_model(strategy, config, num_classes)
    return model, fit_one_step(model, strategy, batch, 0.1, initial_weights)["loss"][0]


def mirrored_and_default_steps(strategy, config, num_classes=None):
    """One step on the same global batch of 8 under the default strategy and under `strategy`."""
    generator = np.random.default_rng(0)
    images = generator.random((8, config.image_size, config.image_size, 3)).astype("float32")
    batch = (images, generator.integers(0, num_classes, size=8)) if num_classes else images
    initial_weights = build_ssl_model(tf.distribute.get_strategy(), config, num_classes).get_weights()
    default = one_training_step(tf.distribute.get_strategy(), config, batch, initial_weights, num_classes)
    mirrored = one_training_step(strategy, config, batch, initial_weights, num_classes)
    assert strategy.num_replicas_in_sync == 2
    return initial_weights, default, mirrored


def assert_same_step(initial_weights, default, mirrored):
    (default_model, default_loss), (mirrored_model, mirrored_loss) = default, mirrored
    np.testing.assert_allclose(mirrored_loss, default_loss, rtol=1e-5)
    changed = 0
    for variable, before, after_default, after_mirrored in zip(
        default_model.weights, initial_weights, default_model.get_weights(), mirrored_model.get_weights()
    ):
        changed += not np.allclose(before, after_default)
        np.testing.assert_allclose(after_mirrored, after_default, rtol=1e-4, atol=1e-5, err_msg=variable.path)
    assert changed > len(initial_weights) // 2, "the step left most weights unchanged: the comparison proves little"


def test_simclr_step_under_mirrored_strategy_matches_default_strategy(two_cpu_strategy):
    """NT-Xent gathers the negatives of both replicas; BatchNorm of the projection head is synchronised.

    The batch has labels, so the online linear probe trains too.
    """
    config = TrainingConfig(method="simclr", sync_batch_norm=True, **TINY_MODEL)
    assert_same_step(*mirrored_and_default_steps(two_cpu_strategy, config, num_classes=3))


def test_simsiam_step_under_mirrored_strategy_matches_default_strategy(two_cpu_strategy):
    """SimSiam's heads always have BatchNorm: only synchronised BatchNorm sees the global batch."""
    config = TrainingConfig(method="simsiam", sync_batch_norm=True, **TINY_MODEL)
    assert_same_step(*mirrored_and_default_steps(two_cpu_strategy, config))


def test_simsiam_without_sync_batch_norm_normalises_each_replica_alone(two_cpu_strategy):
    config = TrainingConfig(method="simsiam", sync_batch_norm=False, **TINY_MODEL)
    _, (_, default_loss), (_, mirrored_loss) = mirrored_and_default_steps(two_cpu_strategy, config)
    assert abs(mirrored_loss - default_loss) > 1e-4


def test_classifier_trains_on_batches_that_do_not_split_evenly(two_cpu_strategy):
    """Global batches of 7 (4 + 3 per replica) and a last batch of 5, with the fixes of trainer/keras_fixes.py."""
    keras.utils.set_random_seed(0)
    with two_cpu_strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    generator = np.random.default_rng(0)
    dataset = tf.data.Dataset.from_tensor_slices(
        (generator.normal(size=(19, 3)).astype("float32"), generator.integers(0, 2, size=19))
    ).batch(7)
    with keras_fixes.strategy_fixes(two_cpu_strategy):
        history = model.fit(dataset, validation_data=dataset, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"] + history["val_loss"]))


def test_pretraining_batch_must_split_evenly_over_the_replicas(two_cpu_strategy):
    config = TrainingConfig(batch_size=9, **TINY_MODEL)
    with pytest.raises(ValueError, match="'training.batch_size': 9 does not split evenly over the 2 replicas"):
        examples = TrainingExamples(uri="unused", splits={}, files={}, sizes={"unlabeled": 90, "train": 9},
                                    class_names=["a", "b"], keys=data.FeatureKeys())
        pretrain.pretrain(config, two_cpu_strategy, encoder=None, examples=examples, log_dir="unused", backup=None)


# --- The whole Trainer on a tiny ingested dataset ----------------------------------------------------

def copy_first(source, destination, count):
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(path for path in source.iterdir() if path.is_file())[:count]:
        shutil.copy(path, destination / path.name)


@pytest.fixture(scope="module")
def examples_uri(real_images, tmp_path_factory):
    """An Examples artifact of 24 unlabeled, 24 train (8 per class) and 12 eval (4 per class) real images."""
    folder = tmp_path_factory.mktemp("tiny-images")
    copy_first(real_images / "unlabeled", folder / "unlabeled", 24)
    for name in sorted(path.name for path in (real_images / "labeled").iterdir()):
        copy_first(real_images / "labeled" / name, folder / "labeled" / name, 8)
        copy_first(real_images / "test" / name, folder / "test" / name, 4)
    root = tmp_path_factory.mktemp("pipeline-root")
    uri = root / "ImageExampleGen" / "examples" / "1"
    data = dict(source="folder", path=str(folder), class_names=None, tfds_name=None, tfds_data_dir=None,
                tfds_splits=None, eval_fraction=0.2, max_bad_fraction=0.0, max_image_pixels=1_000_000,
                follow_external_links=False, on_eval_duplicates="drop")
    report = ingest(data, str(uri), str(root / "ImageExampleGen" / "report" / "1"),
                    lambda: beam.Pipeline(argv=["--runner=DirectRunner"]))
    assert {split: counts["written"] for split, counts in report["splits"].items()} == {
        "unlabeled": 24, "train": 24, "eval": 12}
    return str(uri)


def trainer_arguments(trainer_folder, execution_id, examples_uri, role="pretrainer", base_model=None, **training):
    """The FnArgs fields run_fn reads, laid out as TFX lays out an execution's artifacts."""
    config = TrainingConfig(**dict(TINY_TRAINING, **training))
    return dict(
        train_files=[os.path.join(examples_uri, "Split-train", "*")],
        eval_files=[os.path.join(examples_uri, "Split-eval", "*")],
        serving_model_dir=str(trainer_folder / "model" / str(execution_id) / "Format-Serving"),
        model_run_dir=str(trainer_folder / "model_run" / str(execution_id)),
        custom_config=dict(config.pretraining_dict() if role == "pretrainer" else config.to_dict(), role=role),
        base_model=base_model,
    )


def start_trainer(arguments, log_path, environment=None):
    """Runs the Trainer in a new process whose output goes to `log_path` (a pipe could fill up and block it)."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", RUN_TRAINER, json.dumps(arguments)], stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(environment or {})),
        )


def finish(process, log_path):
    """Waits for the process (killing it after the timeout) and returns (exit code, output)."""
    try:
        process.wait(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with open(log_path) as log:
        return process.returncode, log.read()


def run_on_two_workers(arguments, tmp_path, name):
    """Runs the Trainer as a two-worker MultiWorkerMirroredStrategy cluster; returns each worker's output."""
    workers = [f"127.0.0.1:{portpicker.pick_unused_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        temporary = tmp_path / f"{name}-worker-{index}-tmp"
        temporary.mkdir()
        tf_config_value = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(start_trainer(arguments, tmp_path / f"{name}-worker-{index}.log",
                                       {"TF_CONFIG": tf_config_value, "TMPDIR": str(temporary)}))
    results = [finish(process, tmp_path / f"{name}-worker-{index}.log") for index, process in enumerate(processes)]
    for index, (code, output) in enumerate(results):
        assert code == 0, f"{name} worker {index}:\n{output[-5000:]}"
        assert re.search(r"distribution strategy: multi_worker \(\w+\), replicas: 2", output)
        assert not [entry for entry in os.listdir(tmp_path / f"{name}-worker-{index}-tmp")
                    if entry.startswith("selfsup-")]
    assert "model exported" in results[0][1] and "model exported" not in results[1][1]
    return [output for _, output in results]


def assert_loads_and_classifies(serving_model_dir, examples_uri):
    model = tf.saved_model.load(serving_model_dir)
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*")),
                                      compression_type="GZIP").batch(4)
    outputs = model.signatures["serving_default"](examples=next(iter(records)))
    assert outputs["probabilities"].shape == (4, 3)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_two_workers_pretrain_and_fine_tune_and_only_the_chief_exports(examples_uri, tmp_path):
    pretrainer_folder, trainer_folder = tmp_path / "Pretrainer", tmp_path / "CandidateTrainer"
    pretraining = trainer_arguments(pretrainer_folder, 1, examples_uri, pretrain_epochs=2)
    run_on_two_workers(pretraining, tmp_path, "pretrainer")
    assert sorted(os.listdir(pretrainer_folder / "model" / "1")) == [
        "Format-Serving", contract.AUGMENTED_VIEWS_FILE, encoder_artifact.DESCRIPTION_FILE,
        encoder_artifact.ENCODER_FILE, contract.HISTORY_FILE]
    with open(pretrainer_folder / "model" / "1" / contract.HISTORY_FILE) as handle:
        history = json.load(handle)["history"]
    assert len(history["pretrain/loss"]) == 2 and len(history["pretrain/knn_accuracy"]) == 2
    assert "pretrain" in os.listdir(pretrainer_folder / "model_run" / "1")

    fine_tuning = trainer_arguments(trainer_folder, 1, examples_uri, role="candidate", pretrain_epochs=2,
                                    base_model=pretraining["serving_model_dir"])
    run_on_two_workers(fine_tuning, tmp_path, "candidate")
    assert sorted(os.listdir(trainer_folder / "model" / "1")) == ["Format-Serving", contract.HISTORY_FILE]
    assert_loads_and_classifies(fine_tuning["serving_model_dir"], examples_uri)
    with open(trainer_folder / "model" / "1" / contract.HISTORY_FILE) as handle:
        record = json.load(handle)
    assert len(record["history"]["linear/loss"]) == 1 and len(record["history"]["finetune/val_accuracy"]) == 1
    assert record["encoder"]["base_model"] == pretraining["serving_model_dir"]
    assert "finetune" in os.listdir(trainer_folder / "model_run" / "1")
    for folder in (pretrainer_folder, trainer_folder):
        assert not os.path.exists(folder / checkpoints.BACKUP_FOLDER)


def test_killed_pretrainer_resumes_from_its_last_epoch(examples_uri, tmp_path):
    trainer_folder = tmp_path / "Pretrainer"
    training = dict(pretrain_epochs=12, monitor_every_epochs=100)
    first = trainer_arguments(trainer_folder, 1, examples_uri, **training)
    backup_dir = checkpoints.backup_root(first["model_run_dir"], examples_uri, first["custom_config"])
    pretraining_metadata = os.path.join(backup_dir, "pretraining-fit-1", checkpoints.METADATA_FILE)

    process = start_trainer(first, tmp_path / "first.log")
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_SECONDS
    while not os.path.exists(pretraining_metadata) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    code, output = finish(process, tmp_path / "first.log")
    assert code == -signal.SIGKILL, output[-3000:]
    with open(pretraining_metadata) as handle:
        saved_epoch = json.load(handle)["epoch"]
    assert 1 <= saved_epoch < training["pretrain_epochs"], "the kill came too late to test resuming"
    assert not os.path.exists(first["serving_model_dir"])

    # TFX starts the retry as a new execution, with new artifact folders.
    retry = trainer_arguments(trainer_folder, 2, examples_uri, **training)
    code, output = finish(start_trainer(retry, tmp_path / "retry.log"), tmp_path / "retry.log")
    assert code == 0, output[-5000:]
    resumed_epoch = int(re.search(r"resuming pretraining at epoch (\d+)", output).group(1))
    assert resumed_epoch == saved_epoch
    assert f"pretrain epoch {resumed_epoch + 1}/{training['pretrain_epochs']}" in output
    assert f"pretrain epoch {resumed_epoch}/{training['pretrain_epochs']}" not in output
    assert tf.saved_model.load(retry["serving_model_dir"]).signatures[encoder_artifact.EMBEDDINGS_SIGNATURE]
    with open(trainer_folder / "model" / "2" / contract.HISTORY_FILE) as handle:
        assert len(json.load(handle)["history"]["pretrain/loss"]) == training["pretrain_epochs"]
    assert not os.path.exists(trainer_folder / checkpoints.BACKUP_FOLDER)


def test_nan_loss_fails_the_trainer_and_exports_nothing(examples_uri, tmp_path):
    arguments = trainer_arguments(tmp_path / "Pretrainer", 1, examples_uri, pretrain_epochs=3,
                                  optimizer="sgd", warmup_epochs=0, pretrain_learning_rate=1e30)
    with pytest.raises(NanLossError, match="nothing is exported"):
        run.run_fn(FnArgs(**arguments))
    assert not os.path.exists(arguments["serving_model_dir"])
    assert not os.path.exists(os.path.join(os.path.dirname(arguments["serving_model_dir"]), contract.HISTORY_FILE))

"""`training.precision` (trainer/precision.py) and mixed precision in the Trainers.

- the choice for every kind of machine, with faked devices and CPU flags, and the thin function that reads
  the real ones;
- what stays float32 under a mixed policy: variables, BatchNorm/LayerNorm statistics, the classifier's
  probabilities, the SSL losses; mixed_float16's loss scaling reaches the SSL and distillation steps;
- on real digit scans: a SimCLR Pretrainer, a distilled candidate and a baseline under mixed_bfloat16 train
  with finite losses, record the precision in history.json and export float32 signatures that serve; a
  Pretrainer stopped after an epoch resumes; the global policy is float32 again after each Trainer.
"""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import BackupThenStop, log_text

from trainer import checkpoints, contract, data, distill, encoder_artifact, precision, run
from trainer.augment import build_pretrain_augmenter
from trainer.encoders import build_encoder
from trainer.finetune import build_classifier
from trainer.hparams import BASELINE_FIELDS, ConfigError, TrainingConfig
from trainer.methods import build_method

IMAGE_SIZE = 32
# 1,697 unlabeled and train images: 13 steps of 128 per pretraining or distillation epoch.
TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="small_cnn", encoder_width=16, image_size=IMAGE_SIZE, batch_size=128, finetune_batch_size=32,
            projection_dim=16, projection_hidden_dim=16, knn_k=3, seed=0, strategy="default")
ZEN3 = {"fpu", "sse2", "avx", "avx2", "fma"}
ZEN4 = ZEN3 | {"avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "amx_tile", "amx_bf16"}


# --- The choice ------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, gpus, tpu, flags, policy, reason", [
    # auto
    ("auto", [], False, ZEN3, "float32", "neither avx512_bf16 nor amx_bf16"),
    ("auto", [], False, set(), "float32", "neither avx512_bf16 nor amx_bf16"),
    ("auto", [], False, ZEN4, "mixed_bfloat16", "the CPU has avx512_bf16"),
    ("auto", [], False, SAPPHIRE_RAPIDS, "mixed_bfloat16", "the CPU has amx_bf16"),
    ("auto", [], True, ZEN3, "mixed_bfloat16", "TPU"),
    ("auto", [("Tesla V100", (7, 0))], False, ZEN3, "mixed_float16", "1 NVIDIA GPU(s) of compute capability 7.0"),
    ("auto", [("A100", (8, 0)), ("A100", (8, 0))], False, ZEN4, "mixed_float16", "2 NVIDIA GPU(s)"),
    ("auto", [("Tesla P100", (6, 0))], False, ZEN4, "float32", "compute capability 6.0, below 7.0"),
    ("auto", [("A100", (8, 0)), ("K80", (3, 7))], False, ZEN3, "float32", "'K80' has compute capability 3.7"),
    ("auto", [("a GPU", None)], False, ZEN3, "float32", "compute capability of GPU 'a GPU' is unknown"),
    ("auto", [("A100", (8, 0))], True, ZEN3, "mixed_bfloat16", "TPU"),
    # an explicit setting, whatever the hardware
    ("float32", [("A100", (8, 0))], False, ZEN4, "float32", "training.precision is float32"),
    ("float32", [], True, ZEN4, "float32", "training.precision is float32"),
    ("mixed_bfloat16", [], False, ZEN3, "mixed_bfloat16", "training.precision is mixed_bfloat16"),
    ("mixed_bfloat16", [("A100", (8, 0))], False, ZEN3, "mixed_bfloat16", "training.precision is mixed_bfloat16"),
    ("mixed_float16", [], False, ZEN3, "mixed_float16", "training.precision is mixed_float16"),
    ("mixed_float16", [("Tesla K80", (3, 7))], False, set(), "mixed_float16", "training.precision is mixed_float16"),
])
def test_choose_precision(setting, gpus, tpu, flags, policy, reason):
    chosen, why = precision.choose_precision(setting, gpus, tpu, flags)
    assert chosen == policy
    assert reason in why


def test_an_unknown_precision_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="'training.precision'"):
        precision.choose_precision("bfloat16", [], False, set())
    with pytest.raises(ConfigError, match="'training.precision': must be one of"):
        TrainingConfig(precision="half")


def test_cpu_flags_are_those_every_processor_lists(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert precision.read_cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert precision.read_cpu_flags(str(tmp_path / "absent")) == set()
    # ARM's cpuinfo has "Features" lines, not "flags": no x86 bf16 flags, so auto gives float32 there.
    assert precision.parse_cpu_flags(["processor\t: 0", "Features\t: fp asimd bf16"]) == set()


class FakeGpu:
    def __init__(self, name):
        self.name = name
        self.device_type = "GPU"


def test_this_machine_reads_the_gpus_compute_capability_and_the_cpu_flags(monkeypatch):
    details = {"/physical_device:GPU:0": {"device_name": "Tesla T4", "compute_capability": (7, 5)},
               "/physical_device:GPU:1": {"device_name": "Tesla T4", "compute_capability": (7, 5)}}
    real_list = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [FakeGpu(name) for name in details] if kind == "GPU" else real_list(kind))
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: details[device.name])
    monkeypatch.setattr(precision, "read_cpu_flags", lambda: ZEN4)
    assert precision.precision_for_this_machine("auto") == (
        "mixed_float16", "auto: 2 NVIDIA GPU(s) of compute capability 7.0 or more: Tesla T4 (7.5)")
    details["/physical_device:GPU:1"] = {"device_name": "Quadro M4000", "compute_capability": (5, 2)}
    assert precision.precision_for_this_machine("auto")[0] == "float32"
    assert precision.precision_for_this_machine("mixed_bfloat16") == (
        "mixed_bfloat16", "training.precision is mixed_bfloat16")


def test_this_machine_without_gpu_follows_its_cpu_flags():
    policy, reason = precision.precision_for_this_machine("auto", tf.distribute.get_strategy())
    assert (policy, reason) == precision.choose_precision("auto", [], False, precision.read_cpu_flags())


def test_the_baseline_trains_in_the_same_precision_as_the_candidate():
    assert "precision" in BASELINE_FIELDS
    assert TrainingConfig(precision="mixed_bfloat16").baseline_dict()["precision"] == "mixed_bfloat16"
    assert TrainingConfig(precision="auto").pretraining_dict()["precision"] == "auto"


# --- What stays float32 under a mixed policy ----------------------------------------------------------

@pytest.fixture
def mixed_policy(request):
    """Sets the global policy to the test's parameter and puts float32 back afterwards."""
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mixed_policy", ["mixed_bfloat16"], indirect=True)
def test_normalisation_keeps_float32_variables_and_statistics(mixed_policy):
    batch_norm = keras.layers.BatchNormalization(momentum=0.0)
    layer_norm = keras.layers.LayerNormalization()
    generator = np.random.default_rng(0)
    # A large mean: statistics computed in bfloat16 (8 significant bits, steps of 4 near 1000) would be off.
    inputs = (1000.0 + 50.0 * generator.normal(size=(64, 8))).astype("float32")

    outputs = batch_norm(tf.cast(inputs, tf.bfloat16), training=True)
    normalised = layer_norm(tf.cast(inputs, tf.bfloat16))

    assert batch_norm.compute_dtype == "bfloat16" and outputs.dtype == tf.bfloat16
    assert {variable.dtype for variable in batch_norm.weights + layer_norm.weights} == {"float32"}
    bf16_inputs = tf.cast(tf.cast(inputs, tf.bfloat16), tf.float32).numpy()  # what the layer was given
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), bf16_inputs.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(batch_norm.moving_variance.numpy(), bf16_inputs.var(axis=0), rtol=1e-4)
    assert normalised.dtype == tf.bfloat16
    expected = (bf16_inputs - bf16_inputs.mean(axis=1, keepdims=True)) / np.sqrt(
        bf16_inputs.var(axis=1, keepdims=True) + layer_norm.epsilon)
    # Only the output is rounded to bfloat16 (relative 2^-8).
    np.testing.assert_allclose(normalised.numpy().astype("float32"), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mixed_policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
def test_the_classifier_computes_in_half_precision_and_gives_float32_probabilities(mixed_policy):
    encoder = build_encoder("small_cnn", IMAGE_SIZE, 8)
    classifier = build_classifier(encoder, 3, IMAGE_SIZE, is_sequence=False)
    probabilities = classifier(np.random.default_rng(0).random((4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"))

    half = mixed_policy.replace("mixed_", "")
    assert encoder.compute_dtype == half and encoder.output.dtype == half
    assert classifier.get_layer("feature_norm").compute_dtype == "float32"
    assert classifier.get_layer("classifier").compute_dtype == "float32"
    assert probabilities.dtype == tf.float32
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert {variable.dtype for variable in classifier.weights} == {"float32"}


@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
@pytest.mark.parametrize("mixed_policy", ["mixed_bfloat16"], indirect=True)
def test_ssl_steps_under_bfloat16_keep_float32_variables_and_losses(mixed_policy, method):
    config = TrainingConfig(method=method, **dict(TINY, encoder_width=8))
    encoder = build_encoder("small_cnn", IMAGE_SIZE, 8)
    model = build_method(config, encoder, build_pretrain_augmenter({}, IMAGE_SIZE, 0), False,
                         make_encoder=lambda: build_encoder("small_cnn", IMAGE_SIZE, 8), steps_per_epoch=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).random((16, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(8), epochs=1, verbose=0)

    assert encoder.compute_dtype == "bfloat16"
    assert {variable.dtype for variable in model.weights} == {"float32"}
    assert all(math.isfinite(value) for values in history.history.values() for value in values)


def sgd_step_change(policy, build, batch):
    """The change of every trainable weight in one SGD step from seed-0 weights under `policy`."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        if policy == "mixed_float16":  # Keras' wrapper, started at a scale at which the first step cannot overflow
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            model.optimizer.build(model.trainable_variables)
            model.optimizer.dynamic_scale.assign(256.0)
        before = [variable.numpy() for variable in model.trainable_variables]
        model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
        return model, [variable.numpy() - start for variable, start in zip(model.trainable_variables, before)]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def build_simclr():
    config = TrainingConfig(**dict(TINY, encoder_width=8))
    return build_method(config, build_encoder("small_cnn", IMAGE_SIZE, 8), keras.layers.Identity(), False,
                        make_encoder=None, steps_per_epoch=1)


def build_distillation():
    teacher = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, 8), 3, IMAGE_SIZE, is_sequence=False)
    student = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, 8), 3, IMAGE_SIZE, is_sequence=False)
    return distill.Distillation(teacher, student, keras.layers.Identity(), temperature=2.0, labeled_weight=0.5,
                                unlabeled_batch_size=8, labeled_batch_size=4)


@pytest.mark.parametrize("build", [build_simclr, build_distillation])
def test_mixed_float16_steps_scale_the_loss_and_take_the_float32_step(build):
    """Keras wraps the optimizer in a LossScaleOptimizer under mixed_float16; a custom train_step that did not
    scale its loss would have its gradients divided by the loss scale and barely move."""
    generator = np.random.default_rng(0)
    images = generator.random((8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    batch = images if build is build_simclr else (
        images, (generator.random((4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"), np.array([0, 1, 2, 1])))

    _, float32_change = sgd_step_change("float32", build, batch)
    model, float16_change = sgd_step_change("mixed_float16", build, batch)

    assert model.optimizer.dynamic_scale.numpy() == 256.0  # the step was taken, not skipped as non-finite
    float32_norm = np.sqrt(sum(np.sum(change ** 2) for change in float32_change))
    float16_norm = np.sqrt(sum(np.sum(change ** 2) for change in float16_change))
    assert float32_norm > 0
    assert abs(float16_norm / float32_norm - 1.0) < 0.1, (float16_norm, float32_norm)
    cosine = sum(np.sum(a * b) for a, b in zip(float32_change, float16_change)) / (float32_norm * float16_norm)
    assert cosine > 0.95


# --- The Trainers under mixed_bfloat16, on real digit scans ----------------------------------------------

@pytest.fixture(scope="module")
def examples_uri(digits_examples_uri):
    """scikit-learn's digits as an Examples artifact (tests/conftest.py)."""
    return digits_examples_uri


def trainer(examples_uri, folder, role, config, base_model=None):
    """run.train_and_export for `role` into `folder`; returns (history, history.json, serving folder)."""
    custom_config = config.pretraining_dict() if role == "pretrainer" else (
        config.to_dict() if role == "candidate" else config.baseline_dict())
    serving_dir = str(folder / "model" / "1" / "Format-Serving")
    history = run.train_and_export(dict(custom_config, role=role), data.split_files(examples_uri, "train"),
                                   serving_dir, str(folder / "logs"), str(folder / "backup"), base_model=base_model)
    with open(folder / "model" / "1" / contract.HISTORY_FILE) as handle:
        return history, json.load(handle), serving_dir


def assert_finite(history):
    assert history and all(math.isfinite(value) for values in history.values() for value in values), history


def eval_examples(examples_uri, count):
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    return next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(count)))


def test_a_bfloat16_pretrainer_candidate_and_baseline_train_record_and_export_float32(examples_uri, tmp_path, caplog):
    config = TrainingConfig(precision="mixed_bfloat16", pretrain_epochs=1, linear_epochs=1, finetune_epochs=1,
                            distill_epochs=1, **TINY)

    history, record, encoder_dir = trainer(examples_uri, tmp_path / "Pretrainer", "pretrainer", config)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert_finite(history)
    assert record["precision"] == {"policy": "mixed_bfloat16", "setting": "mixed_bfloat16",
                                   "reason": "training.precision is mixed_bfloat16"}
    assert "precision: mixed_bfloat16 (training.precision is mixed_bfloat16)" in log_text(caplog)
    embeddings = tf.saved_model.load(encoder_dir).signatures[encoder_artifact.EMBEDDINGS_SIGNATURE]
    examples = eval_examples(examples_uri, 5)
    images = data.parse_examples(examples)[data.IMAGE_FEATURE]
    vectors = embeddings(images=images)[encoder_artifact.EMBEDDINGS_OUTPUT]
    assert vectors.dtype == tf.float32 and np.all(np.isfinite(vectors.numpy()))
    np.testing.assert_allclose(np.linalg.norm(vectors.numpy(), axis=1), 1.0, rtol=1e-5)

    history, record, candidate_dir = trainer(examples_uri, tmp_path / "CandidateTrainer", "candidate", config,
                                             base_model=encoder_dir)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert_finite(history)
    assert {"linear/loss", "finetune/loss", "distill/loss"} <= set(history)
    assert record["precision"]["policy"] == "mixed_bfloat16"

    history, record, baseline_dir = trainer(examples_uri, tmp_path / "BaselineTrainer", "baseline", config)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert_finite(history)
    assert record["precision"]["policy"] == "mixed_bfloat16"

    for serving_dir in (candidate_dir, baseline_dir):
        signatures = tf.saved_model.load(serving_dir).signatures
        for outputs in (signatures[contract.SERVING_SIGNATURE](examples=examples),
                        signatures[contract.SERVING_IMAGES_SIGNATURE](images=images)):
            assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape == (5, 10)
            np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
            assert outputs["class_ids"].dtype == tf.int64 and outputs["classes"].dtype == tf.string
        for name in (contract.SERVING_SIGNATURE, contract.SERVING_IMAGES_SIGNATURE):
            assert {spec.dtype for spec in signatures[name].structured_outputs.values()} == {
                tf.float32, tf.int64, tf.string}


def test_the_default_precision_is_this_machines_auto_choice_and_the_policy_is_restored_after_a_failure(
        examples_uri, tmp_path, capsys):
    config = TrainingConfig(pretrain_epochs=1, monitor_every_epochs=100, **TINY)
    assert config.precision == "auto"
    _, record, _ = trainer(examples_uri, tmp_path / "Pretrainer", "pretrainer", config)
    policy, reason = precision.precision_for_this_machine("auto")
    assert record["precision"] == {"policy": policy, "setting": "auto", "reason": reason}
    assert reason.startswith("auto: ")

    bad = dict(TrainingConfig(precision="mixed_bfloat16", **dict(TINY, batch_size=4096)).pretraining_dict(),
               role="pretrainer")
    with pytest.raises(ValueError, match="training.batch_size"):
        run.train_and_export(bad, data.split_files(examples_uri, "train"), str(tmp_path / "bad" / "Format-Serving"),
                             str(tmp_path / "bad-logs"), str(tmp_path / "bad-backup"))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_bfloat16_pretrainer_stopped_after_an_epoch_resumes(examples_uri, tmp_path, caplog, monkeypatch):
    config = TrainingConfig(precision="mixed_bfloat16", pretrain_epochs=3, monitor_every_epochs=100, **TINY)
    folder = tmp_path / "Pretrainer"
    with monkeypatch.context() as patch:
        # The chief's backups: restore_folder is save_folder.
        patch.setattr(checkpoints, "EpochBackup",
                      lambda restore_folder, save_folder, name: BackupThenStop(save_folder, name, stop_after=1))
        with pytest.raises(KeyboardInterrupt):
            trainer(examples_uri, folder, "pretrainer", config)
    assert keras.mixed_precision.global_policy().name == "float32"
    interrupted = log_text(caplog)
    # Stopped in epoch 1's end, before its line: the resumed run below says that epoch 1 was backed up.
    assert "pretraining simclr: 3 epochs" in interrupted and "pretrain epoch" not in interrupted
    caplog.clear()
    assert not (folder / "model" / "1").exists()

    history, record, encoder_dir = trainer(examples_uri, folder, "pretrainer", config)

    resumed = log_text(caplog)
    assert "resuming pretraining at epoch 1" in resumed
    assert "pretrain epoch 1/3" not in resumed and "pretrain epoch 2/3" in resumed and "pretrain epoch 3/3" in resumed
    assert len(history["pretrain/loss"]) == 3 and record["precision"]["policy"] == "mixed_bfloat16"
    assert_finite(history)
    assert tf.saved_model.load(encoder_dir).signatures[encoder_artifact.EMBEDDINGS_SIGNATURE]
    assert not (folder / "backup").exists()
    assert keras.mixed_precision.global_policy().name == "float32"

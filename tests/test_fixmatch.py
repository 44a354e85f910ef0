"""FixMatch on the unlabeled images (trainer/fixmatch.py), on real digit scans.

- the loss of one step against NumPy: only confident images count, divided by the whole unlabeled batch;
- one step under MirroredStrategy (two logical CPUs) equals the same step under the default strategy;
- on digits, a weak classifier pseudo-labels more and more unlabeled images without collapsing;
- a FixMatch stage killed after an epoch resumes from its backup;
- in the Trainers: the candidate's FixMatch phase, and the baseline's matching extra epochs over the labels;
- the cache keys: FixMatch settings never re-run the Pretrainer, and the baseline only when the stage is on.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import BackupThenStop, fit_one_step, log_text, two_cpu_mirrored_strategy

from trainer import checkpoints, data, fixmatch, run
from trainer.encoders import build_encoder
from trainer.finetune import build_classifier
from trainer.hparams import TrainingConfig

IMAGE_SIZE = 32
# 1,697 unlabeled and train images: 13 steps of 128 per FixMatch epoch.
TINY = dict(encoder="small_cnn", encoder_width=16, image_size=IMAGE_SIZE, batch_size=128, finetune_batch_size=32,
            projection_dim=16, projection_hidden_dim=16, knn_k=3, seed=0, fixmatch_learning_rate=1e-3)


def small_fixmatch(strategy, threshold, unlabeled_weight=1.0):
    """FixMatch around a small_cnn classifier of 3 classes with identity views (weak = strong), seed 0."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        classifier = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, 8), 3, IMAGE_SIZE, is_sequence=False)
        return fixmatch.FixMatch(classifier, keras.layers.Identity(), keras.layers.Identity(), threshold,
                                 unlabeled_weight, unlabeled_batch_size=8, labeled_batch_size=4)


def a_batch():
    generator = np.random.default_rng(0)
    return (generator.random((8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
            (generator.random((4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"), np.array([0, 1, 2, 1])))


def one_step(model, batch, strategy=None):
    return fit_one_step(model, strategy or tf.distribute.get_strategy(), batch, 0.5)


def cross_entropy(probabilities, labels):
    return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))


@pytest.mark.parametrize("confident_images", [0, 3, 8])
def test_the_pseudo_label_loss_counts_only_confident_images_over_the_whole_batch(confident_images):
    unlabeled, (labeled, labels) = batch = a_batch()
    model = small_fixmatch(tf.distribute.get_strategy(), threshold=0.5)
    guesses = model.classifier(unlabeled, training=False).numpy()
    labeled_probabilities = model.classifier(labeled, training=False).numpy()
    # The threshold just below the k-th highest confidence makes exactly k images confident.
    confidence = np.sort(guesses.max(axis=1))[::-1]
    model.threshold = float(confidence[confident_images - 1] - 1e-6) if confident_images else 1.0

    history = one_step(model, batch)

    pseudo = cross_entropy(guesses, guesses.argmax(axis=1))
    mask = guesses.max(axis=1) >= model.threshold
    assert mask.sum() == confident_images
    np.testing.assert_allclose(history["confident_fraction"][0], confident_images / 8, rtol=1e-6)
    # The metrics are measured before the step's update: strong views = weak views here.
    np.testing.assert_allclose(history["unlabeled_loss"][0], (pseudo * mask).sum() / 8, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(history["labeled_loss"][0], cross_entropy(labeled_probabilities, labels).mean(),
                               rtol=1e-4)


def test_without_confident_images_the_step_is_the_labeled_step():
    batch = a_batch()
    nothing_confident = small_fixmatch(tf.distribute.get_strategy(), threshold=1.0)
    labels_only = small_fixmatch(tf.distribute.get_strategy(), threshold=0.0, unlabeled_weight=0.0)
    initial = nothing_confident.classifier.get_weights()

    one_step(nothing_confident, batch)
    one_step(labels_only, batch)

    for after, expected in zip(nothing_confident.classifier.get_weights(), labels_only.classifier.get_weights()):
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(before, after) for before, after in zip(initial,
                                                                        nothing_confident.classifier.get_weights()))


def test_fixmatch_step_under_mirrored_strategy_matches_default_strategy():
    """Both batches split over the replicas; each replica's loss share is its sum over the global batch."""
    mirrored = two_cpu_mirrored_strategy(collective_key_base=3_500_000)
    batch = a_batch()
    default_model = small_fixmatch(tf.distribute.get_strategy(), threshold=0.0)
    # Half of the images confident: both terms of the loss are in the step.
    confidence = np.sort(default_model.classifier(batch[0], training=False).numpy().max(axis=1))
    default_model.threshold = float(confidence[3:5].mean())
    initial = default_model.classifier.get_weights()
    mirrored_model = small_fixmatch(mirrored, threshold=default_model.threshold)

    default_history = one_step(default_model, batch)
    mirrored_history = one_step(mirrored_model, batch, mirrored)

    assert mirrored.num_replicas_in_sync == 2
    assert default_history["confident_fraction"][0] == 0.5
    np.testing.assert_allclose(mirrored_history["loss"][0], default_history["loss"][0], rtol=1e-5)
    for variable, before, after_default, after_mirrored in zip(
        default_model.classifier.weights, initial, default_model.classifier.get_weights(),
        mirrored_model.classifier.get_weights(),
    ):
        assert not np.allclose(before, after_default), variable.path
        np.testing.assert_allclose(after_mirrored, after_default, rtol=1e-4, atol=1e-6, err_msg=variable.path)


# --- FixMatch on real images -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weak_weights(digits_examples_uri):
    """The weights of a classifier trained on 3 digits per class, and that label budget's paths (trained once)."""
    keras.utils.set_random_seed(0)
    keep_paths = data.label_budget_paths(data.split_files(digits_examples_uri, "train"), 3)
    classifier = new_classifier()
    classifier.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    classifier.fit(data.labeled_dataset(data.split_files(digits_examples_uri, "train"), 32, IMAGE_SIZE, 0, shuffle=True,
                                        keep_paths=keep_paths), epochs=40, verbose=0)
    return classifier.get_weights(), keep_paths


def new_classifier():
    return build_classifier(build_encoder("small_cnn", IMAGE_SIZE, TINY["encoder_width"]), 10, IMAGE_SIZE,
                            is_sequence=False)


def weak_classifier(weak_weights):
    """A fresh copy of the weakly trained classifier, and its label budget."""
    weights, keep_paths = weak_weights
    classifier = new_classifier()
    classifier.set_weights(weights)
    return classifier, keep_paths


def eval_accuracy(classifier, digits_examples_uri):
    correct = [np.argmax(classifier(images, training=False), axis=1) == labels.numpy()
               for images, labels in data.labeled_dataset(data.split_files(digits_examples_uri, "eval"), 256,
                                                          IMAGE_SIZE, 0, shuffle=False)]
    return float(np.mean(np.concatenate(correct)))


def test_fixmatch_pseudo_labels_more_and_more_images_without_collapsing_on_digits(
        digits_examples_uri, digits_training_examples, weak_weights, tmp_path):
    """On 100 eval images the accuracy moves by noise (0.62 -> 0.59-0.71 in five runs here; the gain is
    measured on cifar10-ssl, docs/benchmarks.md section 7), the growing share of confident unlabeled images
    does not (0.10 -> 0.42-0.46). A collapsed classifier (one class everywhere) would score about 0.1."""
    classifier, keep_paths = weak_classifier(weak_weights)
    before = eval_accuracy(classifier, digits_examples_uri)
    # Digits are gray: the strong views keep their colour and most of the digit.
    config = TrainingConfig(fixmatch_epochs=8, fixmatch_threshold=0.7, **dict(
        TINY, fixmatch_learning_rate=3e-3, fixmatch_augment={"crop_scale_min": 0.5, "grayscale_probability": 0.0}))
    backup = checkpoints.EpochBackup(str(tmp_path / "backup"), str(tmp_path / "backup"), "fixmatch")

    history = fixmatch.fixmatch_classifier(config, tf.distribute.get_strategy(), classifier, digits_training_examples,
                                           str(tmp_path), backup, keep_paths=keep_paths)

    assert len(history["fixmatch/loss"]) == 8
    assert {"fixmatch/labeled_loss", "fixmatch/unlabeled_loss", "fixmatch/accuracy", "fixmatch/val_loss",
            "fixmatch/val_accuracy"} <= set(history)
    confident = history["fixmatch/confident_fraction"]
    assert confident[-1] > confident[0] + 0.2, confident
    after = eval_accuracy(classifier, digits_examples_uri)
    np.testing.assert_allclose(after, history["fixmatch/val_accuracy"][-1], atol=1e-6)  # trained in place
    assert after > before - 0.1, (before, after)
    assert (tmp_path / "fixmatch").is_dir()  # TensorBoard


def test_killed_fixmatch_resumes_from_its_backup(digits_training_examples, weak_weights, tmp_path, caplog):
    config = TrainingConfig(fixmatch_epochs=3, fixmatch_threshold=0.9, **TINY)
    folder = str(tmp_path / "backup")
    classifier, keep_paths = weak_classifier(weak_weights)
    with pytest.raises(KeyboardInterrupt):
        fixmatch.fixmatch_classifier(config, tf.distribute.get_strategy(), classifier, digits_training_examples,
                                     str(tmp_path), BackupThenStop(folder, "fixmatch", stop_after=1),
                                     keep_paths=keep_paths)
    interrupted = log_text(caplog)
    # Stopped in epoch 1's end, before its line: the resumed run below says that epoch 1 was backed up.
    assert "fixmatch: 3 epochs" in interrupted and "fixmatch epoch" not in interrupted
    caplog.clear()

    restarted, _ = weak_classifier(weak_weights)  # a new Trainer starts from fine-tuning again
    history = fixmatch.fixmatch_classifier(config, tf.distribute.get_strategy(), restarted, digits_training_examples,
                                           str(tmp_path), checkpoints.EpochBackup(folder, folder, "fixmatch"),
                                           keep_paths=keep_paths)

    resumed = log_text(caplog)
    assert "resuming fixmatch at epoch 1" in resumed
    assert "fixmatch epoch 1/3" not in resumed and "fixmatch epoch 2/3" in resumed and "fixmatch epoch 3/3" in resumed
    assert len(history["fixmatch/loss"]) == 3  # the epoch before the kill is in the history


# --- In the Trainers ---------------------------------------------------------------------------------

def test_candidate_runs_fixmatch_and_the_baseline_gets_as_many_labeled_batches(
        digits_examples_uri, digits_training_examples, tmp_path):
    config = TrainingConfig(pretrain_epochs=0, linear_epochs=1, finetune_epochs=1, fixmatch_epochs=2,
                            labels_per_class=4, **TINY)
    base_model = str(tmp_path / "Pretrainer" / "Format-Serving")
    run.train_and_export(dict(config.pretraining_dict(), role="pretrainer"),
                         data.split_files(digits_examples_uri, "train"), base_model,
                         str(tmp_path / "Pretrainer" / "logs"), str(tmp_path / "Pretrainer" / "backup"))

    _, candidate = run._train("candidate", config, tf.distribute.get_strategy(), digits_training_examples,
                              str(tmp_path / "candidate-logs"), str(tmp_path / "b1"), str(tmp_path / "b1"), base_model)
    baseline_config = TrainingConfig(**config.baseline_dict())
    _, baseline = run._train("baseline", baseline_config, tf.distribute.get_strategy(), digits_training_examples,
                             str(tmp_path / "baseline-logs"), str(tmp_path / "b2"), str(tmp_path / "b2"), None)

    assert len(candidate["history"]["fixmatch/loss"]) == 2 and candidate["timings"]["fixmatch_seconds"] > 0
    assert (tmp_path / "b1" / "fixmatch-fit-1").is_dir()
    # FixMatch: 2 epochs x 13 steps of 32 labeled images; the baseline: 2 more epochs of 13 labeled batches.
    sizes = digits_training_examples.sizes
    steps = (sizes["unlabeled"] + sizes["train"]) // TINY["batch_size"]
    assert steps == 13 and baseline["matched_labeled_batches"] == {"epochs": 2, "steps_per_epoch": steps}
    assert len(baseline["history"]["supervised/loss"]) == 1 + 1 and len(baseline["history"]["matched/loss"]) == 2
    assert not [key for key in baseline["history"] if key.startswith("fixmatch/")]


def test_fixmatch_settings_change_the_baseline_only_when_the_stage_is_on():
    off = TrainingConfig(fixmatch_epochs=0)
    on = TrainingConfig(fixmatch_epochs=5)
    assert TrainingConfig().fixmatch_epochs == 20  # on by default
    assert off.pretraining_dict() == on.pretraining_dict() == TrainingConfig(
        fixmatch_epochs=3, fixmatch_threshold=0.8, fixmatch_augment={"crop_scale_min": 0.3}).pretraining_dict()
    assert off.baseline_dict()["fixmatch_epochs"] == 0 and "batch_size" not in off.baseline_dict()
    assert TrainingConfig(**off.baseline_dict()).fixmatch_epochs == 0  # the baseline Trainer rebuilds it
    assert TrainingConfig(fixmatch_epochs=0, fixmatch_threshold=0.5).baseline_dict() == off.baseline_dict()
    assert on.baseline_dict()["fixmatch_epochs"] == 5 and on.baseline_dict()["batch_size"] == 256
    assert TrainingConfig(fixmatch_epochs=5, fixmatch_threshold=0.5).baseline_dict() == on.baseline_dict()


@pytest.mark.parametrize("settings, key", [
    ({"fixmatch_threshold": 0.0}, "training.fixmatch_threshold"),
    ({"fixmatch_threshold": 1.5}, "training.fixmatch_threshold"),
    ({"fixmatch_epochs": -1}, "training.fixmatch_epochs"),
    ({"fixmatch_unlabeled_weight": -0.1}, "training.fixmatch_unlabeled_weight"),
    ({"fixmatch_learning_rate": 0.0}, "training.fixmatch_learning_rate"),
    ({"fixmatch_augment": {"crop_scale": 0.3}}, "training.fixmatch_augment.crop_scale"),
])
def test_bad_fixmatch_settings_name_their_key(settings, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        TrainingConfig(**settings)

"""Distillation of the fine-tuned candidate into a student (trainer/distill.py) on real digit scans.

- the soft cross-entropy against NumPy;
- one step under MirroredStrategy (two logical CPUs) equals the same step under the default strategy;
- the student's loss falls and its agreement with the teacher rises;
- a distillation killed after an epoch resumes from its backup;
- in the Trainer: with distill_epochs 0 the candidate is the fine-tuned classifier, otherwise the student.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import BackupThenStop, fit_one_step, log_text, two_cpu_mirrored_strategy

from trainer import checkpoints, data, distill, run
from trainer.encoders import build_encoder
from trainer.finetune import build_classifier
from trainer.hparams import TrainingConfig

IMAGE_SIZE = 32
# 1,697 unlabeled and train images: 13 steps of 128 per distillation epoch.
TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="small_cnn", encoder_width=16, image_size=IMAGE_SIZE, batch_size=128, finetune_batch_size=32,
            projection_dim=16, projection_hidden_dim=16, knn_k=3, seed=0, distill_learning_rate=3e-3)


# --- The loss --------------------------------------------------------------------------------------

def softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_soft_cross_entropy_matches_numpy(temperature):
    generator = np.random.default_rng(0)
    teacher_logits, student_logits = generator.normal(size=(2, 6, 5)) * 3

    loss = distill.soft_cross_entropy(softmax(teacher_logits).astype("float32"),
                                      softmax(student_logits).astype("float32"), temperature)

    teacher_soft = softmax(teacher_logits / temperature)
    student_log = np.log(softmax(student_logits / temperature))
    np.testing.assert_allclose(loss.numpy(), -(teacher_soft * student_log).sum(axis=1), rtol=1e-5)
    # The cross-entropy is smallest when the student's distribution is the teacher's.
    own = distill.soft_cross_entropy(softmax(teacher_logits).astype("float32"),
                                     softmax(teacher_logits).astype("float32"), temperature)
    assert np.all(own.numpy() <= loss.numpy() + 1e-6)


# --- One step under MirroredStrategy equals the default strategy's --------------------------------------

def build_distillation(strategy):
    """Distillation of a small_cnn teacher into a small_cnn student (identity augmentation), from seed 0."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        teacher = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, 8), 3, IMAGE_SIZE, is_sequence=False)
        student = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, 8), 3, IMAGE_SIZE, is_sequence=False)
        return distill.Distillation(teacher, student, keras.layers.Identity(), temperature=2.0, labeled_weight=0.5,
                                    unlabeled_batch_size=8, labeled_batch_size=4)


def distillation_step(strategy, batch, initial_weights):
    """One SGD step from `initial_weights` under `strategy`; returns (model, loss)."""
    model = build_distillation(strategy)
    return model, fit_one_step(model, strategy, batch, 0.5, initial_weights)["loss"][0]


def test_distillation_step_under_mirrored_strategy_matches_default_strategy():
    """Both batches split over the replicas; each replica's loss share is its sum over the global batch."""
    mirrored = two_cpu_mirrored_strategy(collective_key_base=3_000_000)
    generator = np.random.default_rng(0)
    batch = (generator.random((8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
             (generator.random((4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"), np.array([0, 1, 2, 1])))
    initial = build_distillation(tf.distribute.get_strategy())
    initial_weights = initial.get_weights()

    default_model, default_loss = distillation_step(tf.distribute.get_strategy(), batch, initial_weights)
    mirrored_model, mirrored_loss = distillation_step(mirrored, batch, initial_weights)

    assert mirrored.num_replicas_in_sync == 2
    np.testing.assert_allclose(mirrored_loss, default_loss, rtol=1e-5)
    for before, after in zip(initial.teacher.get_weights(), default_model.teacher.get_weights()):
        np.testing.assert_array_equal(after, before)  # the teacher is frozen
    changed = 0
    for variable, before, after_default, after_mirrored in zip(
        default_model.student.weights, initial.student.get_weights(), default_model.student.get_weights(),
        mirrored_model.student.get_weights(),
    ):
        changed += not np.allclose(before, after_default)
        np.testing.assert_allclose(after_mirrored, after_default, rtol=1e-4, atol=1e-6, err_msg=variable.path)
    assert changed == len(default_model.student.weights)


# --- Distillation on real images ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher_and_initial_encoder_weights(digits_examples_uri):
    """A classifier trained on the 100 train images, and its encoder's weights before that training."""
    keras.utils.set_random_seed(0)
    encoder = build_encoder("small_cnn", IMAGE_SIZE, TINY["encoder_width"])
    initial_weights = encoder.get_weights()
    teacher = build_classifier(encoder, 10, IMAGE_SIZE, is_sequence=False)
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    teacher.fit(data.labeled_dataset(data.split_files(digits_examples_uri, "train"), 32, IMAGE_SIZE, 0, shuffle=True),
                epochs=30, verbose=0)
    return teacher, initial_weights


def unlabeled_agreement(teacher, student, digits_examples_uri):
    """Fraction of the unlabeled images (not augmented) on which student and teacher predict the same class."""
    images = data.image_dataset(data.split_files(digits_examples_uri, "unlabeled"), 256, IMAGE_SIZE, 0, shuffle=False)
    agreements = [np.argmax(teacher(batch, training=False), axis=1) == np.argmax(student(batch, training=False), axis=1)
                  for batch in images]
    return float(np.mean(np.concatenate(agreements)))


def test_student_loss_falls_and_agreement_with_the_teacher_rises(digits_examples_uri, digits_training_examples,
                                                                  teacher_and_initial_encoder_weights, tmp_path):
    teacher, initial_encoder_weights = teacher_and_initial_encoder_weights
    config = TrainingConfig(distill_epochs=6, **TINY)
    keras.utils.set_random_seed(1)
    backup = checkpoints.EpochBackup(str(tmp_path / "backup"), str(tmp_path / "backup"), "distillation")

    student, history = distill.distill_classifier(config, tf.distribute.get_strategy(), teacher,
                                                  initial_encoder_weights, digits_training_examples, str(tmp_path),
                                                  backup)

    assert len(history["distill/loss"]) == 6
    assert {"distill/distillation_loss", "distill/labeled_loss", "distill/accuracy", "distill/val_loss",
            "distill/val_accuracy"} <= set(history)
    assert history["distill/loss"][-1] < history["distill/loss"][0] - 0.2, history["distill/loss"]
    agreement = history["distill/teacher_agreement"]
    assert agreement[-1] > agreement[0] + 0.15, agreement
    assert unlabeled_agreement(teacher, student, digits_examples_uri) > 0.6
    assert student is not teacher and student.count_params() == teacher.count_params()
    assert (tmp_path / "distill").is_dir()  # TensorBoard


def test_killed_distillation_resumes_from_its_backup(digits_training_examples, teacher_and_initial_encoder_weights,
                                                     tmp_path, caplog):
    teacher, initial_encoder_weights = teacher_and_initial_encoder_weights
    config = TrainingConfig(distill_epochs=3, **TINY)
    folder = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        distill.distill_classifier(config, tf.distribute.get_strategy(), teacher, initial_encoder_weights,
                                   digits_training_examples, str(tmp_path),
                                   BackupThenStop(folder, "distillation", stop_after=1))
    interrupted = log_text(caplog)
    # Stopped in epoch 1's end, before its line: the resumed run below says that epoch 1 was backed up.
    assert "distillation: 3 epochs" in interrupted and "distill epoch" not in interrupted
    caplog.clear()

    student, history = distill.distill_classifier(
        config, tf.distribute.get_strategy(), teacher, initial_encoder_weights, digits_training_examples, str(tmp_path),
        checkpoints.EpochBackup(folder, folder, "distillation"))

    resumed = log_text(caplog)
    assert "resuming distillation at epoch 1" in resumed
    assert "distill epoch 1/3" not in resumed and "distill epoch 2/3" in resumed and "distill epoch 3/3" in resumed
    assert len(history["distill/loss"]) == 3
    # The restored student goes on from where it was: the resumed epochs are better than the first.
    assert history["distill/teacher_agreement"][2] > history["distill/teacher_agreement"][0]


# --- In the Trainer ----------------------------------------------------------------------------------

def eval_cross_entropy(classifier, digits_examples_uri):
    """Mean cross-entropy of `classifier` over the eval split."""
    losses = [keras.losses.sparse_categorical_crossentropy(labels, classifier(images, training=False)).numpy()
              for images, labels in data.labeled_dataset(data.split_files(digits_examples_uri, "eval"), 256,
                                                         IMAGE_SIZE, 0, shuffle=False)]
    return float(np.mean(np.concatenate(losses)))


def pretrained_encoder(config, digits_examples_uri, folder):
    """The Pretrainer's Model artifact for `config` (the real role "pretrainer" of run.train_and_export)."""
    serving_dir = str(folder / "Pretrainer" / "model" / "1" / "Format-Serving")
    run.train_and_export(dict(config.pretraining_dict(), role="pretrainer"),
                         data.split_files(digits_examples_uri, "train"), serving_dir,
                         str(folder / "Pretrainer" / "logs"), str(folder / "Pretrainer" / "backup"))
    return serving_dir


@pytest.mark.parametrize("distill_epochs, pretrain_epochs", [(0, 0), (1, 1)])
def test_candidate_is_the_fine_tuned_classifier_unless_distilled(digits_examples_uri, digits_training_examples,
                                                                 tmp_path, caplog, distill_epochs, pretrain_epochs):
    config = TrainingConfig(pretrain_epochs=pretrain_epochs, linear_epochs=1, finetune_epochs=1,
                            distill_epochs=distill_epochs, **TINY)
    keras.utils.set_random_seed(config.seed)
    backup_dir = str(tmp_path / "backup")
    base_model = pretrained_encoder(config, digits_examples_uri, tmp_path)

    classifier, record = run._train("candidate", config, tf.distribute.get_strategy(), digits_training_examples,
                                    str(tmp_path / "logs"), backup_dir, backup_dir, base_model)
    history, timings = record["history"], record["timings"]

    # The exported classifier is the one whose eval loss the last phase reported at its last epoch.
    fine_tuned_loss = history["finetune/val_loss"][-1]
    if distill_epochs == 0:
        assert not [key for key in history if key.startswith("distill/")] and "distill_seconds" not in timings
        assert not (tmp_path / "logs" / "distill").exists()
        np.testing.assert_allclose(eval_cross_entropy(classifier, digits_examples_uri), fine_tuned_loss, rtol=1e-5)
    else:
        assert len(history["distill/loss"]) == 1 and timings["distill_seconds"] > 0
        assert "student from the pretrained encoder" in log_text(caplog)
        assert (tmp_path / "logs" / "distill").is_dir() and (tmp_path / "backup" / "distillation-fit-1").is_dir()
        student_loss = eval_cross_entropy(classifier, digits_examples_uri)
        np.testing.assert_allclose(student_loss, history["distill/val_loss"][-1], rtol=1e-5)
        assert abs(student_loss - fine_tuned_loss) > 1e-3


def test_the_baseline_is_never_distilled(digits_training_examples, tmp_path):
    config = TrainingConfig(linear_epochs=1, finetune_epochs=0, distill_epochs=2, **TINY)

    _, record = run._train("baseline", config, tf.distribute.get_strategy(), digits_training_examples,
                           str(tmp_path / "logs"), str(tmp_path / "backup"), str(tmp_path / "backup"), None)
    history, timings = record["history"], record["timings"]

    assert list(history) and not [key for key in history if key.startswith("distill/")]
    assert "distill_seconds" not in timings


def test_distillation_uses_only_the_label_budgets_labels(digits_examples_uri, digits_training_examples, tmp_path,
                                                         monkeypatch):
    """The labeled half of each distillation step must not see labels outside training.labels_per_class."""
    config = TrainingConfig(pretrain_epochs=0, linear_epochs=1, finetune_epochs=0, distill_epochs=1,
                            labels_per_class=2, **TINY)
    train_calls = []
    original = data.labeled_dataset

    def recording(file_patterns, *args, **kwargs):
        if any("Split-train" in pattern for pattern in file_patterns):
            train_calls.append(kwargs.get("keep_paths"))
        return original(file_patterns, *args, **kwargs)

    monkeypatch.setattr(data, "labeled_dataset", recording)
    base_model = pretrained_encoder(config, digits_examples_uri, tmp_path)
    _, record = run._train("candidate", config, tf.distribute.get_strategy(), digits_training_examples,
                           str(tmp_path / "logs"), str(tmp_path / "backup"), str(tmp_path / "backup"), base_model)
    budget = data.label_budget_paths(data.split_files(digits_examples_uri, "train"), 2)
    assert len(train_calls) == 2 and all(list(paths) == budget for paths in train_calls)  # fine-tuning, distillation
    assert record["labeled_train_images"] == len(budget) == 2 * len(digits_training_examples.class_names)

"""SimCLR, SimSiam and BYOL train on real images; the monitors catch collapse; sequences flatten."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SAMPLE_CLASSES

from trainer import losses
from trainer.augment import build_pretrain_augmenter
from trainer.encoders import build_encoder
from trainer.hparams import TrainingConfig
from trainer.methods import BYOL, SimCLR, SimSiam, build_method, output_std
from trainer.monitors import CollapseMonitor, RepresentationCollapseError, weighted_knn_accuracy

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def real_batch(real_images):
    """(32, 32, 32, 3) real images in [0, 1] and labels (-1 for the unlabeled half)."""
    paths = sorted(real_images.glob("labeled/*/*.jpg"))[::5][:16] + sorted(real_images.glob("unlabeled/*.jpg"))[:16]
    images = tf.stack([tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3) for path in paths])
    class_of = {name: label for label, name in enumerate(SAMPLE_CLASSES)}
    labels = [class_of[path.parent.name] if path.parent.name in class_of else -1 for path in paths]
    return tf.cast(images, tf.float32) / 255.0, tf.constant(labels, tf.int64)


def train(method, batch, steps, encoder_name="small_cnn", **overrides):
    keras.utils.set_random_seed(0)
    settings = dict(method=method, encoder=encoder_name, encoder_width=16, projection_dim=16,
                    projection_hidden_dim=32, predictor_hidden_dim=8, batch_size=32, pretrain_epochs=steps,
                    pretrain_augment={"crop_scale_min": 0.6, "jitter_probability": 0.3}, **overrides)
    config = TrainingConfig(**settings)

    def make_encoder():
        return build_encoder(config.encoder, IMAGE_SIZE, config.encoder_width)

    model = build_method(config, make_encoder(), build_pretrain_augmenter(config.pretrain_augment, IMAGE_SIZE, 1),
                         encoder_name == "sequence_cnn", make_encoder, steps_per_epoch=1, num_classes=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    history = model.fit(dataset, epochs=steps, steps_per_epoch=1, verbose=0)
    return model, history.history


@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_each_method_loss_goes_down_on_real_images(real_batch, method):
    _, history = train(method, real_batch, steps=30)
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < losses[:5].mean() - 0.01, losses
    assert "probe_accuracy" in history and 0.0 <= history["probe_accuracy"][-1] <= 1.0
    if method == "simclr":
        accuracy = np.array(history["contrastive_accuracy"])  # of one batch a step: compare 5 steps with 5
        assert accuracy[-5:].mean() > accuracy[:5].mean(), accuracy
    else:
        assert history["output_std"][-1] > 0.01  # not collapsed


def test_byol_target_moves_only_by_the_ema_and_normalises_with_batch_statistics(real_batch):
    from trainer import losses

    model, _ = train("byol", real_batch, steps=2)
    images, _ = real_batch
    target_ids = {id(variable) for variable in model.target_encoder.weights + model.target_projection_head.weights}
    assert model.optimized_variables and not any(id(variable) in target_ids for variable in model.optimized_variables)
    model.total_steps = 100  # mid-schedule, so that the EMA decay is below 1
    pairs = model._network_pairs()
    before = [(online.numpy(), target.numpy()) for online, target in pairs]
    step = float(model.optimizer.iterations.numpy())
    model.train_step(images)  # one more gradient step, then the EMA
    decay = float(losses.byol_target_decay(tf.constant(step + 1.0), float(model.total_steps), 0.99))
    for (online, target), (_, target_before) in zip(pairs, before):
        if online.trainable:  # weights (BatchNorm moving statistics follow the same EMA, plus their own updates)
            expected = decay * target_before + (1.0 - decay) * online.numpy()
            np.testing.assert_allclose(target.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=target.path)
    # Batch statistics: the target's outputs for an image depend on the rest of the batch.
    views = images[:8]
    alone = model._target_projections(views)[:4]
    with_others = model._target_projections(tf.concat([views[:4], images[16:20]], axis=0))[:4]
    assert float(tf.reduce_max(tf.abs(alone - with_others))) > 1e-4


def test_probe_trains_only_the_probe_and_ignores_unlabeled_images(real_batch):
    model, _ = train("simclr", real_batch, steps=1)
    images, labels = real_batch
    with tf.GradientTape() as tape:
        features = model.encoder(images, training=False)
        probe_loss = model._probe_loss(features, labels)
    encoder_gradients, probe_gradients = tape.gradient(
        probe_loss, [model.encoder.trainable_weights, model.probe.trainable_weights])
    assert all(gradient is None for gradient in encoder_gradients)  # stop-gradient: nothing reaches the encoder
    assert all(float(tf.norm(gradient)) > 0 for gradient in probe_gradients)
    all_unlabeled = model._probe_loss(features, tf.fill(labels.shape, tf.constant(-1, tf.int64)))
    assert float(all_unlabeled) == 0.0


@pytest.mark.parametrize("method", ["simclr", "simsiam"])
def test_sequence_encoder_pretrains_on_flattened_frames(real_batch, method):
    _, history = train(method, real_batch, steps=3, encoder_name="sequence_cnn", sequence_pool_size=3)
    assert np.all(np.isfinite(history["loss"]))


def test_methods_take_their_own_settings_and_build_method_maps_the_config_onto_them():
    encoder = build_encoder("small_cnn", IMAGE_SIZE, 8)
    heads = dict(projection_dim=8, projection_hidden_dim=16, projection_layers=2)
    simclr = SimCLR(encoder, keras.layers.Identity(), projection_batch_norm=False, temperature=0.5, **heads)
    simclr.build_heads()
    frames_1, frames_2 = tf.random.stateless_normal([6, 8], [1, 2]), tf.random.stateless_normal([6, 8], [3, 4])
    loss, metrics = simclr.ssl_loss(frames_1, frames_2, None, None)
    expected_loss, expected_accuracy = losses.nt_xent(simclr.projection_head(frames_1, training=True),
                                                      simclr.projection_head(frames_2, training=True), 0.5)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)
    assert float(metrics["contrastive_accuracy"]) == pytest.approx(float(expected_accuracy))

    config = TrainingConfig(method="simclr", temperature=0.3, sequence_pool_size=2, augment_jit_compile=False,
                            byol_base_ema=0.9, **heads, predictor_hidden_dim=4)
    model = build_method(config, build_encoder("small_cnn", IMAGE_SIZE, 8), keras.layers.Identity(), False, None,
                         steps_per_epoch=3)
    assert isinstance(model, SimCLR) and model.temperature == 0.3 and model.sequence_pool_size == 2
    simsiam = build_method(TrainingConfig(method="simsiam", **heads, predictor_hidden_dim=4),
                           build_encoder("small_cnn", IMAGE_SIZE, 8), keras.layers.Identity(), False, None, 1)
    assert isinstance(simsiam, SimSiam) and simsiam.predictor.layers[0].units == 4
    byol = build_method(TrainingConfig(method="byol", byol_base_ema=0.9, pretrain_epochs=2, **heads),
                        build_encoder("small_cnn", IMAGE_SIZE, 8), keras.layers.Identity(), False,
                        lambda: build_encoder("small_cnn", IMAGE_SIZE, 8), steps_per_epoch=3)
    assert isinstance(byol, BYOL) and byol.base_ema == 0.9 and byol.total_steps == 6


def test_collapse_rule_fires_on_an_encoder_that_outputs_a_constant(real_batch):
    images, _ = real_batch
    constant_outputs = np.ones((32, 16), np.float32) * np.linspace(0.1, 1.0, 16, dtype=np.float32)
    assert float(output_std(constant_outputs)) == pytest.approx(0.0, abs=1e-6)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    constant = keras.layers.Lambda(lambda x: tf.zeros([tf.shape(x)[0], 16]) + 1.0)(inputs)
    constant_encoder = keras.Model(inputs, constant)
    config = TrainingConfig(method="simsiam", projection_dim=16, projection_hidden_dim=16, predictor_hidden_dim=8,
                            batch_size=32)
    model = build_method(config, constant_encoder, keras.layers.Identity(), False, None, steps_per_epoch=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(RepresentationCollapseError, match="representation collapsed at epoch"):
        model.fit(tf.data.Dataset.from_tensors(images).repeat(), epochs=2, steps_per_epoch=1, verbose=0,
                  callbacks=[CollapseMonitor(config.collapse_std_threshold, config.projection_dim)])


def test_weighted_knn_accuracy_against_a_hand_computed_case():
    train_embeddings = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    train_embeddings /= np.linalg.norm(train_embeddings, axis=1, keepdims=True)
    train_labels = np.array([0, 0, 1, 1])
    eval_embeddings = np.array([[1, 0.05], [0.05, 1]], np.float32)
    eval_embeddings /= np.linalg.norm(eval_embeddings, axis=1, keepdims=True)
    assert weighted_knn_accuracy(train_embeddings, train_labels, eval_embeddings, np.array([0, 1]), 2, 2) == 1.0
    assert weighted_knn_accuracy(train_embeddings, train_labels, eval_embeddings, np.array([1, 0]), 2, 2) == 0.0

"""Self-supervised methods as keras.Model subclasses with their own `train_step`.

Each model takes batches of images (B, H, W, 3) float32 in [0, 1], makes two augmented views
inside the step, and minimises its SSL loss. Under a tf.distribute strategy each replica's
loss is divided by the number of replicas, because Keras sums gradients across replicas.
"""

from typing import Dict, Tuple

import keras
import tensorflow as tf

from trainer import losses
from trainer.flatten import flatten_sequence_features
from trainer.hparams import TrainingConfig


def build_projection_head(
    output_dim: int, hidden_dim: int, num_layers: int, batch_norm: bool, name: str, final_batch_norm: bool = False,
    synchronized: bool = False,
) -> keras.Sequential:
    """MLP head: (num_layers - 1) x [Dense, (BatchNorm), ReLU], then Dense(output_dim) (+ BatchNorm).

    Input (N, D) features, output (N, output_dim). With `synchronized`, BatchNorm statistics
    are computed over the global batch across replicas (training.sync_batch_norm).
    """
    head = keras.Sequential(name=name)
    for index in range(num_layers - 1):
        head.add(keras.layers.Dense(hidden_dim, use_bias=not batch_norm, name=f"{name}_dense_{index}"))
        if batch_norm:
            head.add(keras.layers.BatchNormalization(synchronized=synchronized, name=f"{name}_bn_{index}"))
        head.add(keras.layers.ReLU(name=f"{name}_relu_{index}"))
    head.add(keras.layers.Dense(output_dim, use_bias=not final_batch_norm, name=f"{name}_dense_out"))
    if final_batch_norm:
        head.add(keras.layers.BatchNormalization(synchronized=synchronized, name=f"{name}_bn_out"))
    return head


def output_std(outputs: tf.Tensor) -> tf.Tensor:
    """Mean over dimensions of the per-dimension std of L2-normalised outputs (N, D) -> scalar.

    About 1/sqrt(D) for a healthy representation, 0 when every output is the same (collapse).
    """
    normalized = tf.math.l2_normalize(tf.cast(outputs, tf.float32), axis=1)
    return tf.reduce_mean(tf.math.reduce_std(normalized, axis=0))


class SelfSupervisedModel(keras.Model):
    """Shared machinery: two views, the encoder (with sequence flattening), loss scaling, trackers."""

    def __init__(self, encoder: keras.Model, augmenter: keras.layers.Layer, config: TrainingConfig,
                 is_sequence: bool, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.augmenter = augmenter
        self.config = config
        self.is_sequence = is_sequence
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def encode(self, images: tf.Tensor, training: bool) -> tf.Tensor:
        """(B, H, W, 3) -> (N, D): N = B, or B * ceil(T / pool) frames for sequence encoders."""
        features = self.encoder(images, training=training)
        if self.is_sequence:
            features = flatten_sequence_features(features, self.config.sequence_pool_size)
        return features

    def ssl_loss(self, views_1: tf.Tensor, views_2: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """Returns (loss for this replica, extra metric values)."""
        raise NotImplementedError

    def after_gradient_step(self) -> None:
        """Hook for updates outside the gradient step (BYOL's target network)."""

    @property
    def extra_trackers(self) -> Dict[str, keras.metrics.Metric]:
        return {}

    @property
    def metrics(self):
        return [self.loss_tracker, *self.extra_trackers.values()]

    def train_step(self, images):
        views_1 = self.augmenter(images, training=True)
        views_2 = self.augmenter(images, training=True)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, extra = self.ssl_loss(views_1, views_2)
            scaled_loss = loss / replicas
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.after_gradient_step()
        self.loss_tracker.update_state(loss)
        for name, value in extra.items():
            self.extra_trackers[name].update_state(value)
        return {metric.name: metric.result() for metric in self.metrics}


class SimCLR(SelfSupervisedModel):
    """SimCLR: projection head and NT-Xent with negatives from every replica."""

    def __init__(self, encoder, augmenter, config: TrainingConfig, is_sequence: bool, **kwargs):
        super().__init__(encoder, augmenter, config, is_sequence, **kwargs)
        self.projection_head = build_projection_head(
            config.projection_dim, config.projection_hidden_dim, config.projection_layers,
            config.projection_batch_norm, name="projection_head", synchronized=config.sync_batch_norm,
        )
        self.contrastive_accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def extra_trackers(self):
        return {"contrastive_accuracy": self.contrastive_accuracy_tracker}

    def ssl_loss(self, views_1, views_2):
        projections_1 = self.projection_head(self.encode(views_1, training=True), training=True)
        projections_2 = self.projection_head(self.encode(views_2, training=True), training=True)
        loss = losses.nt_xent_loss(projections_1, projections_2, self.config.temperature)
        accuracy = losses.contrastive_accuracy(projections_1, projections_2, self.config.temperature)
        return loss, {"contrastive_accuracy": accuracy}


class SimSiam(SelfSupervisedModel):
    """SimSiam: projector (BatchNorm on every layer), bottleneck predictor, stop-gradient."""

    def __init__(self, encoder, augmenter, config: TrainingConfig, is_sequence: bool, **kwargs):
        super().__init__(encoder, augmenter, config, is_sequence, **kwargs)
        self.projection_head = build_projection_head(
            config.projection_dim, config.projection_hidden_dim, config.projection_layers,
            batch_norm=True, name="projection_head", final_batch_norm=True, synchronized=config.sync_batch_norm,
        )
        self.predictor = build_projection_head(
            config.projection_dim, config.predictor_hidden_dim, 2, batch_norm=True, name="predictor",
            synchronized=config.sync_batch_norm,
        )
        self.output_std_tracker = keras.metrics.Mean(name="output_std")

    @property
    def extra_trackers(self):
        return {"output_std": self.output_std_tracker}

    def ssl_loss(self, views_1, views_2):
        projections_1 = self.projection_head(self.encode(views_1, training=True), training=True)
        projections_2 = self.projection_head(self.encode(views_2, training=True), training=True)
        predictions_1 = self.predictor(projections_1, training=True)
        predictions_2 = self.predictor(projections_2, training=True)
        loss = 0.5 * (losses.simsiam_loss(predictions_1, projections_2)
                      + losses.simsiam_loss(predictions_2, projections_1))
        return loss, {"output_std": output_std(projections_1)}


class BYOL(SelfSupervisedModel):
    """BYOL: online network with predictor, target network updated by a cosine-scheduled EMA."""

    def __init__(self, encoder, augmenter, config: TrainingConfig, is_sequence: bool, target_encoder: keras.Model,
                 total_steps: int, **kwargs):
        super().__init__(encoder, augmenter, config, is_sequence, **kwargs)
        head_args = (config.projection_dim, config.projection_hidden_dim, config.projection_layers, True)
        synchronized = config.sync_batch_norm
        self.projection_head = build_projection_head(*head_args, name="projection_head", synchronized=synchronized)
        self.predictor = build_projection_head(
            config.projection_dim, config.projection_hidden_dim, 2, batch_norm=True, name="predictor",
            synchronized=synchronized,
        )
        self.target_encoder = target_encoder
        self.target_projection_head = build_projection_head(*head_args, name="target_projection_head",
                                                            synchronized=synchronized)
        self.target_encoder.trainable = False
        self.target_projection_head.trainable = False
        self.total_steps = max(1, total_steps)
        self.output_std_tracker = keras.metrics.Mean(name="output_std")

    @property
    def extra_trackers(self):
        return {"output_std": self.output_std_tracker}

    def build_targets(self, image_shape) -> None:
        """Builds both networks and copies the online weights into the target network."""
        images = tf.zeros([2, *image_shape])
        features = self.encode(images, training=False)
        self.predictor(self.projection_head(features))
        target_features = self.target_encoder(images, training=False)
        if self.is_sequence:
            target_features = flatten_sequence_features(target_features, self.config.sequence_pool_size)
        self.target_projection_head(target_features)
        for online, target in self._network_pairs():
            target.assign(online)

    def _network_pairs(self):
        return list(zip(self.encoder.weights + self.projection_head.weights,
                        self.target_encoder.weights + self.target_projection_head.weights))

    def _target_projections(self, views):
        features = self.target_encoder(views, training=False)
        if self.is_sequence:
            features = flatten_sequence_features(features, self.config.sequence_pool_size)
        return self.target_projection_head(features, training=False)

    def ssl_loss(self, views_1, views_2):
        projections_1 = self.projection_head(self.encode(views_1, training=True), training=True)
        projections_2 = self.projection_head(self.encode(views_2, training=True), training=True)
        predictions_1 = self.predictor(projections_1, training=True)
        predictions_2 = self.predictor(projections_2, training=True)
        targets_1 = self._target_projections(views_1)
        targets_2 = self._target_projections(views_2)
        loss = 0.5 * (losses.byol_loss(predictions_1, targets_2) + losses.byol_loss(predictions_2, targets_1))
        return loss, {"output_std": output_std(projections_1)}

    def after_gradient_step(self) -> None:
        decay = losses.byol_target_decay(
            tf.cast(self.optimizer.iterations, tf.float32), float(self.total_steps), self.config.byol_base_ema
        )
        for online, target in self._network_pairs():
            target.assign(decay * target + (1.0 - decay) * tf.cast(online, target.dtype))


def build_method(config: TrainingConfig, encoder: keras.Model, augmenter: keras.layers.Layer, is_sequence: bool,
                 make_encoder, steps_per_epoch: int) -> SelfSupervisedModel:
    """The configured method's model; `make_encoder()` builds a fresh encoder (BYOL's target)."""
    if config.method == "simclr":
        return SimCLR(encoder, augmenter, config, is_sequence, name="simclr")
    if config.method == "simsiam":
        return SimSiam(encoder, augmenter, config, is_sequence, name="simsiam")
    if config.method == "byol":
        total_steps = max(1, config.pretrain_epochs * steps_per_epoch)
        model = BYOL(encoder, augmenter, config, is_sequence, target_encoder=make_encoder(),
                     total_steps=total_steps, name="byol")
        model.build_targets((config.image_size, config.image_size, 3))
        return model
    raise ValueError(f"config key 'training.method': unknown method {config.method!r}")


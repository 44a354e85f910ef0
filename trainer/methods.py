"""Self-supervised methods as keras.Model subclasses with their own `train_step`.

Each model takes batches of images (B, H, W, 3) float32 in [0, 1], makes two augmented views
inside the step, and minimises its SSL loss. Under a tf.distribute strategy each replica's
loss is divided by the number of replicas, because Keras sums gradients across replicas.

The models take their own settings as keyword arguments (`SimCLR(..., temperature=0.1)`); `build_method`
is the one place that maps a TrainingConfig onto them.
"""

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from trainer import losses
from trainer.augment import view_maker
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


def _float32(tensor: tf.Tensor) -> tf.Tensor:
    """Heads compute in the policy's dtype (bfloat16/float16 under mixed precision): losses take float32."""
    return tf.cast(tensor, tf.float32)


def output_std(outputs: tf.Tensor) -> tf.Tensor:
    """Mean over dimensions of the per-dimension std of L2-normalised outputs (N, D) -> scalar.

    About 1/sqrt(D) for a healthy representation, 0 when every output is the same (collapse).
    """
    normalized = tf.math.l2_normalize(tf.cast(outputs, tf.float32), axis=1)
    return tf.reduce_mean(tf.math.reduce_std(normalized, axis=0))


class SelfSupervisedModel(keras.Model):
    """Shared machinery: two views, the encoder (with sequence flattening), loss scaling, trackers.

    Batches are images (B, H, W, 3), or (images, labels (B,)) with label -1 for unlabeled images.
    When `num_classes` is given and labels come with the batch, an online linear probe is trained
    on the stop-gradient features of the labeled images (as solo-learn does): its accuracy
    (`probe_accuracy`) follows the representation's quality during pretraining and its
    gradients never reach the encoder.
    """

    def __init__(self, encoder: keras.Model, augmenter: keras.layers.Layer, *, projection_dim: int,
                 is_sequence: bool = False, sequence_pool_size: int = 1, augment_jit_compile: bool = True,
                 num_classes: Optional[int] = None, **kwargs):
        """`projection_dim`: the projection head's output width (the predictor's input); `sequence_pool_size`:
        frames averaged per SSL input of a sequence encoder; `augment_jit_compile`: the two views compiled with
        XLA (augment.view_maker); `num_classes` adds the online probe."""
        super().__init__(**kwargs)
        self.encoder = encoder
        self.augmenter = augmenter
        self.make_views = view_maker(augmenter, augment_jit_compile)
        self.projection_dim = projection_dim
        self.is_sequence = is_sequence
        self.sequence_pool_size = sequence_pool_size
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.probe = keras.layers.Dense(num_classes, name="online_probe") if num_classes else None
        self.probe_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy")

    def frames(self, features: tf.Tensor) -> tf.Tensor:
        """Encoder features -> (N, D) SSL inputs: N = B, or B * ceil(T / pool) frames for sequences."""
        if self.is_sequence:
            return flatten_sequence_features(features, self.sequence_pool_size)
        return features

    def pooled(self, features: tf.Tensor) -> tf.Tensor:
        """Encoder features -> (B, D) one vector per image (sequences averaged over time)."""
        return tf.reduce_mean(features, axis=1) if self.is_sequence else features

    def encode(self, images: tf.Tensor, training: bool) -> tf.Tensor:
        """(B, H, W, 3) -> (N, D) SSL inputs."""
        return self.frames(self.encoder(images, training=training))

    def build_heads(self) -> None:
        """Creates the heads' (and the probe's) variables and marks the model built.

        Under a distribution strategy Keras builds a model by calling it symbolically, which these
        train-only models (no `call`) do not support, and restoring a backup needs the variables.
        The encoder is a functional model, built already. Runs inside the caller's strategy scope.
        """
        feature_dim = self.encoder.output.shape[-1]
        heads = [(self.projection_head, feature_dim), (getattr(self, "predictor", None), self.projection_dim),
                 (self.probe, feature_dim)]
        for head, input_dim in heads:
            if head is not None and not head.built:
                head.build((None, input_dim))
        self.built = True

    def ssl_loss(self, frames_1: tf.Tensor, frames_2: tf.Tensor, views_1: tf.Tensor,
                 views_2: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """(N, D) online frames of both views (and the views) -> (loss for this replica, metric values)."""
        raise NotImplementedError

    def after_gradient_step(self) -> None:
        """Hook for updates outside the gradient step (BYOL's target network)."""

    @property
    def optimized_variables(self) -> list:
        """The variables the optimizer updates (BYOL leaves its target network out)."""
        return self.trainable_variables

    @property
    def extra_trackers(self) -> Dict[str, keras.metrics.Metric]:
        return {}

    @property
    def metrics(self):
        probe = [self.probe_accuracy_tracker] if self.probe is not None else []
        return [self.loss_tracker, *self.extra_trackers.values(), *probe]

    def _probe_loss(self, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """Masked cross-entropy of the probe on stop-gradient pooled features (labels -1 ignored)."""
        logits = tf.cast(self.probe(tf.stop_gradient(self.pooled(features))), tf.float32)
        labeled = tf.cast(labels >= 0, tf.float32)
        safe_labels = tf.maximum(labels, 0)
        per_image = keras.losses.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
        self.probe_accuracy_tracker.update_state(safe_labels, logits, sample_weight=labeled)
        return tf.reduce_sum(per_image * labeled) / tf.maximum(tf.reduce_sum(labeled), 1.0)

    def train_step(self, data):
        images, labels = data if isinstance(data, tuple) else (data, None)
        views_1 = self.make_views(images)
        views_2 = self.make_views(images)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            features_1 = self.encoder(views_1, training=True)
            features_2 = self.encoder(views_2, training=True)
            loss, extra = self.ssl_loss(self.frames(features_1), self.frames(features_2), views_1, views_2)
            total_loss = loss
            if self.probe is not None and labels is not None:
                total_loss = loss + self._probe_loss(features_1, labels)
            # Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer, which unscales the
            # gradients of the loss it scaled; any other optimizer returns the loss as it is.
            scaled_loss = self.optimizer.scale_loss(total_loss / replicas)
        variables = self.optimized_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.after_gradient_step()
        self.loss_tracker.update_state(loss)
        for name, value in extra.items():
            self.extra_trackers[name].update_state(value)
        return {metric.name: metric.result() for metric in self.metrics}


class SimCLR(SelfSupervisedModel):
    """SimCLR: projection head and NT-Xent with negatives from every replica."""

    def __init__(self, encoder, augmenter, *, projection_dim: int, projection_hidden_dim: int, projection_layers: int,
                 projection_batch_norm: bool, temperature: float, sync_batch_norm: bool = False, **kwargs):
        super().__init__(encoder, augmenter, projection_dim=projection_dim, **kwargs)
        self.temperature = temperature
        self.projection_head = build_projection_head(
            projection_dim, projection_hidden_dim, projection_layers, projection_batch_norm, name="projection_head",
            synchronized=sync_batch_norm,
        )
        self.contrastive_accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def extra_trackers(self):
        return {"contrastive_accuracy": self.contrastive_accuracy_tracker}

    def ssl_loss(self, frames_1, frames_2, views_1, views_2):
        projections_1 = _float32(self.projection_head(frames_1, training=True))
        projections_2 = _float32(self.projection_head(frames_2, training=True))
        loss, accuracy = losses.nt_xent(projections_1, projections_2, self.temperature)
        return loss, {"contrastive_accuracy": accuracy}


class SimSiam(SelfSupervisedModel):
    """SimSiam: projector (BatchNorm on every layer), bottleneck predictor, stop-gradient."""

    def __init__(self, encoder, augmenter, *, projection_dim: int, projection_hidden_dim: int, projection_layers: int,
                 predictor_hidden_dim: int, sync_batch_norm: bool = False, **kwargs):
        super().__init__(encoder, augmenter, projection_dim=projection_dim, **kwargs)
        self.projection_head = build_projection_head(
            projection_dim, projection_hidden_dim, projection_layers, batch_norm=True, name="projection_head",
            final_batch_norm=True, synchronized=sync_batch_norm,
        )
        self.predictor = build_projection_head(
            projection_dim, predictor_hidden_dim, 2, batch_norm=True, name="predictor", synchronized=sync_batch_norm,
        )
        self.output_std_tracker = keras.metrics.Mean(name="output_std")

    @property
    def extra_trackers(self):
        return {"output_std": self.output_std_tracker}

    def ssl_loss(self, frames_1, frames_2, views_1, views_2):
        projections_1 = self.projection_head(frames_1, training=True)
        projections_2 = self.projection_head(frames_2, training=True)
        predictions_1 = _float32(self.predictor(projections_1, training=True))
        predictions_2 = _float32(self.predictor(projections_2, training=True))
        projections_1, projections_2 = _float32(projections_1), _float32(projections_2)
        loss = 0.5 * (losses.simsiam_loss(predictions_1, projections_2)
                      + losses.simsiam_loss(predictions_2, projections_1))
        return loss, {"output_std": output_std(projections_1)}


class BYOL(SelfSupervisedModel):
    """BYOL: online network with predictor, target network updated by a cosine-scheduled EMA."""

    def __init__(self, encoder, augmenter, *, target_encoder: keras.Model, total_steps: int, projection_dim: int,
                 projection_hidden_dim: int, projection_layers: int, base_ema: float, sync_batch_norm: bool = False,
                 **kwargs):
        """`target_encoder`: a fresh encoder of the same architecture; `total_steps`: the steps of the EMA's
        cosine schedule (from `base_ema` to 1)."""
        super().__init__(encoder, augmenter, projection_dim=projection_dim, **kwargs)
        head_args = (projection_dim, projection_hidden_dim, projection_layers, True)
        synchronized = sync_batch_norm
        self.base_ema = base_ema
        self.projection_head = build_projection_head(*head_args, name="projection_head", synchronized=synchronized)
        self.predictor = build_projection_head(
            projection_dim, projection_hidden_dim, 2, batch_norm=True, name="predictor", synchronized=synchronized,
        )
        # The target network stays `trainable` so that its BatchNorm layers normalise with the batch's
        # statistics, as in DeepMind's BYOL and solo-learn (Keras 3 uses the moving averages in a
        # non-trainable layer); the optimizer never sees it (optimized_variables), only the EMA moves it.
        self.target_encoder = target_encoder
        self.target_projection_head = build_projection_head(*head_args, name="target_projection_head",
                                                            synchronized=synchronized)
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
        self.target_projection_head(self.frames(self.target_encoder(images, training=False)))
        for online, target in self._network_pairs():
            target.assign(online)

    def _network_pairs(self):
        return list(zip(self.encoder.weights + self.projection_head.weights,
                        self.target_encoder.weights + self.target_projection_head.weights))

    @property
    def optimized_variables(self) -> list:
        target = {id(variable) for variable in
                  self.target_encoder.trainable_variables + self.target_projection_head.trainable_variables}
        return [variable for variable in self.trainable_variables if id(variable) not in target]

    def _target_projections(self, views):
        features = self.frames(self.target_encoder(views, training=True))
        return tf.stop_gradient(self.target_projection_head(features, training=True))

    def ssl_loss(self, frames_1, frames_2, views_1, views_2):
        projections_1 = self.projection_head(frames_1, training=True)
        projections_2 = self.projection_head(frames_2, training=True)
        predictions_1 = _float32(self.predictor(projections_1, training=True))
        predictions_2 = _float32(self.predictor(projections_2, training=True))
        targets_1 = _float32(self._target_projections(views_1))
        targets_2 = _float32(self._target_projections(views_2))
        loss = 0.5 * (losses.byol_loss(predictions_1, targets_2) + losses.byol_loss(predictions_2, targets_1))
        return loss, {"output_std": output_std(projections_1)}

    def after_gradient_step(self) -> None:
        decay = losses.byol_target_decay(
            tf.cast(self.optimizer.iterations, tf.float32), float(self.total_steps), self.base_ema
        )
        for online, target in self._network_pairs():
            target.assign(decay * target + (1.0 - decay) * tf.cast(online, target.dtype))


def build_method(config: TrainingConfig, encoder: keras.Model, augmenter: keras.layers.Layer, is_sequence: bool,
                 make_encoder, steps_per_epoch: int, num_classes: Optional[int] = None) -> SelfSupervisedModel:
    """The configured method's model, its variables created (call it inside the strategy's scope).

    `make_encoder()` builds a fresh encoder (BYOL's target); `num_classes` adds the online linear probe.
    """
    common = dict(is_sequence=is_sequence, sequence_pool_size=config.sequence_pool_size,
                  augment_jit_compile=config.augment_jit_compile, num_classes=num_classes,
                  projection_dim=config.projection_dim, projection_hidden_dim=config.projection_hidden_dim,
                  projection_layers=config.projection_layers, sync_batch_norm=config.sync_batch_norm,
                  name=config.method)
    if config.method == "simclr":
        model = SimCLR(encoder, augmenter, projection_batch_norm=config.projection_batch_norm,
                       temperature=config.temperature, **common)
    elif config.method == "simsiam":
        model = SimSiam(encoder, augmenter, predictor_hidden_dim=config.predictor_hidden_dim, **common)
    elif config.method == "byol":
        model = BYOL(encoder, augmenter, target_encoder=make_encoder(),
                     total_steps=max(1, config.pretrain_epochs * steps_per_epoch), base_ema=config.byol_base_ema,
                     **common)
        model.build_targets((config.image_size, config.image_size, 3))
    else:
        raise ValueError(f"config key 'training.method': unknown method {config.method!r}")
    model.build_heads()
    return model


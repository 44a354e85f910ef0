"""Optimizers and learning-rate schedules (cosine decay with linear warmup)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="selfsup")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak = float(peak)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = min(int(warmup_steps), self.total_steps - 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(3.141592653589793 * tf.clip_by_value(progress, 0.0, 1.0)))
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


class LARS(keras.optimizers.SGD):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), as SimCLR uses.

    Each weight matrix's update is scaled by trust = eta * ||w|| / ||g + wd * w||; biases and
    BatchNorm parameters (rank 1) are updated without scaling or weight decay.
    """

    def __init__(self, learning_rate, momentum=0.9, weight_decay_rate=1e-6, eta=1e-3, name="lars", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        self.weight_decay_rate = weight_decay_rate
        self.eta = eta

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) > 1:
            gradient = gradient + self.weight_decay_rate * variable
            weight_norm = tf.norm(variable)
            gradient_norm = tf.norm(gradient)
            trust = tf.where(
                (weight_norm > 0) & (gradient_norm > 0), self.eta * weight_norm / gradient_norm, 1.0
            )
            gradient = gradient * tf.cast(trust, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)


def build_optimizer(name: str, learning_rate: float, weight_decay: float, total_steps: int,
                    warmup_steps: int) -> keras.optimizers.Optimizer:
    """adam | adamw | sgd (momentum 0.9) | lars, with WarmupCosine(learning_rate)."""
    schedule = WarmupCosine(learning_rate, total_steps, warmup_steps)
    if name == "adam":
        return keras.optimizers.Adam(schedule)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9)
    if name == "lars":
        return LARS(schedule, weight_decay_rate=weight_decay)
    raise ValueError(f"config key 'training.optimizer': unknown optimizer {name!r}")

"""Rough pretraining speed and forward MFLOP of encoders, to size label-efficiency arms.

    python -m bench.encoder_speed small_cnn:128 resnet10_cifar:32 resnet10_cifar:64[:simsiam]

One short fit (2 warm-up steps, then 8 measured steps of batch 256 on random images) per ENCODER:WIDTH[:METHOD];
prints images/s of wall time and per 2 CPU-seconds of this process. A guide for choosing epochs, not a
measurement to publish on its own (bench.throughput is that).
"""
import sys
import time

import numpy as np
import tensorflow as tf

from trainer.augment import build_pretrain_augmenter
from trainer.encoders import build_encoder, forward_flops
from trainer.hparams import TrainingConfig
from trainer.methods import build_method
from trainer.optimizers import build_optimizer


def measure(encoder_name: str, width: int, method: str = "simclr", steps: int = 8, batch: int = 256) -> None:
    config = TrainingConfig(encoder=encoder_name, encoder_width=width, method=method)
    encoder = build_encoder(encoder_name, 32, width)
    augmenter = build_pretrain_augmenter(config.pretrain_augment, 32, 0)
    model = build_method(config, encoder, augmenter, False, make_encoder=lambda: build_encoder(encoder_name, 32, width),
                         steps_per_epoch=100, num_classes=10)
    model.compile(optimizer=build_optimizer("adam", 1e-3, 1e-4, 1000, 10))
    images = np.random.default_rng(0).random((batch * steps, 32, 32, 3), dtype=np.float32)
    labels = -np.ones(batch * steps, dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    images_measured = steps * batch
    print(f"{method} {encoder_name} w{width}: {forward_flops(encoder) / 1e6:.1f} MFLOP, "
          f"{images_measured / wall:.0f} img/s wall, {images_measured / cpu * 2:.0f} img/s per 2 CPU-s", flush=True)


def main(specs) -> int:
    for spec in specs:
        name, width, *method = spec.split(":")
        measure(name, int(width), *method)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The augmentation alone, with and without XLA (`training.augment_jit_compile`).

    python -m bench.augment_speed [--rounds 2] [--calls 30] [--batch 256] [--preset strong|weak] [--output x.json]

Per round and variant: 2 warm-up calls, then `--calls` calls on one batch of random 32x32 images; prints
augmented images per second of wall time and per CPU-second of this process (the steadier figure on a
shared machine), the load average before and after, and the machine (CPU model and flags), and writes
them to `--output` as JSON. The variants alternate within each round.
"""

import argparse
import json
import os
import resource
import time

import numpy as np
import tensorflow as tf

from bench.machine import machine_info
from trainer.augment import build_augmenter, view_maker
from trainer.hparams import augment_settings


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(make_views, images: tf.Tensor, calls: int) -> dict:
    for _ in range(2):
        make_views(images).numpy()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(calls):
        views = make_views(images)
    views.numpy()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    count = calls * int(images.shape[0])
    return {"images_per_second": round(count / wall, 1), "images_per_cpu_second": round(count / cpu, 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--preset", choices=("strong", "weak"), default="strong")
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    images = tf.constant(np.random.default_rng(0).random((args.batch, 32, 32, 3)).astype("float32"))
    augmenter = build_augmenter(augment_settings(args.preset, {}), 32, 0, name="augmenter")
    # tf.function without XLA is what the training step runs when augment_jit_compile is false.
    variants = {"tf.function": tf.function(view_maker(augmenter, False)), "xla": view_maker(augmenter, True)}
    result = {"machine": machine_info(), "preset": args.preset, "batch": args.batch, "calls": args.calls,
              "load_average_before": os.getloadavg(), "rounds": []}
    for round_index in range(args.rounds):
        row = {name: measure(make_views, images, args.calls) for name, make_views in variants.items()}
        result["rounds"].append(row)
        print(f"round {round_index + 1}: " + "; ".join(
            f"{name} {values['images_per_second']:.0f} img/s, {values['images_per_cpu_second']:.0f} img/CPU-s"
            for name, values in row.items()), flush=True)
    result["load_average_after"] = os.getloadavg()
    ratios = [row["xla"]["images_per_cpu_second"] / row["tf.function"]["images_per_cpu_second"]
              for row in result["rounds"]]
    result["xla_speedup_per_cpu_second"] = [round(ratio, 2) for ratio in ratios]
    print(f"XLA / tf.function per CPU-second: {', '.join(f'{ratio:.2f}x' for ratio in ratios)}; "
          f"load average {result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f}; "
          f"{result['machine'].get('cpu_model')} ({result['machine'].get('cpu_family_model')})", flush=True)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=1)
    return result


if __name__ == "__main__":
    main()

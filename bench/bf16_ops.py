"""Which convolution op makes mixed_bfloat16 slow on this CPU: forward, input gradient or filter gradient.

    python -m bench.bf16_ops [--rounds 3] [--seconds 1.0]

Times the encoder's second convolution (3x3, 128 -> 128 channels, stride 2, 16x16 maps, batch 256) as the
three TensorFlow ops a training step runs (Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter) in float32
and bfloat16, alternating the two dtypes in every round, and prints milliseconds per call (median over
rounds) with the load average.
"""

import argparse
import os
import statistics
import time

import tensorflow as tf

BATCH, SIZE, CHANNELS = 256, 16, 128


def _timed(function, *args, seconds: float) -> float:
    function(*args).numpy()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        result = function(*args)
        calls += 1
    result.numpy()
    return (time.perf_counter() - started) / calls


def _operations():
    def total(tensor):
        return tf.reduce_sum(tf.cast(tensor, tf.float32))

    return {
        "Conv2D": lambda x, k, dy: total(tf.nn.conv2d(x, k, 2, "SAME")),
        "Conv2DBackpropInput": lambda x, k, dy: total(tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[BATCH, SIZE, SIZE, CHANNELS], filter=k, out_backprop=dy, strides=[1, 2, 2, 1],
            padding="SAME")),
        "Conv2DBackpropFilter": lambda x, k, dy: total(tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=[3, 3, CHANNELS, CHANNELS], out_backprop=dy, strides=[1, 2, 2, 1],
            padding="SAME")),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bf16_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing")
    args = parser.parse_args(argv)
    inputs32 = (tf.random.normal([BATCH, SIZE, SIZE, CHANNELS], seed=1), tf.random.normal([3, 3, CHANNELS, CHANNELS],
                seed=2), tf.random.normal([BATCH, SIZE // 2, SIZE // 2, CHANNELS], seed=3))
    functions = {name: tf.function(function) for name, function in _operations().items()}
    times = {}
    loads = []
    for round_index in range(args.rounds):
        dtypes = ("float32", "bfloat16") if round_index % 2 == 0 else ("bfloat16", "float32")
        for name, function in functions.items():
            for dtype in dtypes:
                inputs = [tf.cast(value, dtype) for value in inputs32]
                loads.append(os.getloadavg()[0])
                times.setdefault((name, dtype), []).append(_timed(function, *inputs, seconds=args.seconds))
    print(f"{'op':<24}{'float32 ms':>12}{'bfloat16 ms':>13}{'bf16 / f32':>12}")
    for name in functions:
        f32 = statistics.median(times[(name, "float32")]) * 1e3
        bf16 = statistics.median(times[(name, "bfloat16")]) * 1e3
        print(f"{name:<24}{f32:>12.1f}{bf16:>13.1f}{bf16 / f32:>12.2f}")
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, load average (1 min) min {min(loads):.2f} "
          f"max {max(loads):.2f}, median of {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The probe: what this machine's matrix units do per dtype, and which convolution op makes mixed_bfloat16 slow.

    python -m bench.bf16_ops [--rounds 3] [--seconds 1.0]

The one definition of the micro-benchmark's operations, in any dtype (float32, bfloat16, float16): a square
matmul, and the encoder's second convolution (3x3, 128 -> 128 channels, stride 2, on 16x16 maps) forward and
forward with both gradients (`probe_operations`; `bench.throughput`'s probe worker times them as the peak of
the FLOP utilisation), or split into the three TensorFlow ops a training step runs (Conv2D,
Conv2DBackpropInput, Conv2DBackpropFilter; `conv_ops`).

Run as a module it times the three ops in float32 and bfloat16 (batch 256), alternating the two dtypes in
every round, and prints milliseconds per call (median over rounds) with the load average.

TensorFlow is imported inside the functions: `bench.throughput`'s parent imports `probe_feeds` without it.
"""

import argparse
import os
import statistics
import time
from typing import Callable, Dict, Sequence, Tuple

BATCH, SIZE, CHANNELS, KERNEL, STRIDE = 256, 16, 128, 3, 2
PROBE_OPERATIONS = ("matmul", "conv", "conv_grad")


def probe_feeds(dtypes: Sequence[str]) -> Tuple[str, ...]:
    """The micro-benchmark's feeds ("matmul_float32", ...) for these dtypes."""
    return tuple(f"{operation}_{dtype}" for operation in PROBE_OPERATIONS for dtype in dtypes)


def conv_flops(batch: int) -> int:
    """FLOPs of one forward pass of the probe's convolution on `batch` maps."""
    return 2 * batch * (SIZE // STRIDE) ** 2 * CHANNELS * KERNEL * KERNEL * CHANNELS


def conv_inputs(batch: int, dtype):
    """(maps (batch, 16, 16, 128), kernel (3, 3, 128, 128), output gradient (batch, 8, 8, 128)) in `dtype`."""
    import tensorflow as tf

    shapes = ([batch, SIZE, SIZE, CHANNELS], [KERNEL, KERNEL, CHANNELS, CHANNELS],
              [batch, SIZE // STRIDE, SIZE // STRIDE, CHANNELS])
    return tuple(tf.cast(tf.random.normal(shape, seed=seed), dtype) for seed, shape in enumerate(shapes, start=3))


def _total(tensor):
    import tensorflow as tf

    return tf.reduce_sum(tf.cast(tensor, tf.float32))


def _conv(x, k):
    import tensorflow as tf

    return tf.nn.conv2d(x, k, STRIDE, "SAME")


def probe_operations(dtype_name: str, matmul_size: int, conv_batch: int) -> Dict[str, Tuple[Callable, float]]:
    """{"matmul_<dtype>", "conv_<dtype>", "conv_grad_<dtype>": (a tf.function of no arguments, its FLOPs)}."""
    import tensorflow as tf

    dtype = tf.as_dtype(dtype_name)
    a = tf.cast(tf.random.normal([matmul_size, matmul_size], seed=1), dtype)
    b = tf.cast(tf.random.normal([matmul_size, matmul_size], seed=2), dtype)
    x, k, _ = conv_inputs(conv_batch, dtype)

    def conv_grad():
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            total = _total(_conv(x, k))
        grad_x, grad_k = tape.gradient(total, [x, k])
        return _total(grad_x) + _total(grad_k)

    flops = conv_flops(conv_batch)
    return {
        f"matmul_{dtype_name}": (tf.function(lambda: _total(tf.matmul(a, b))), 2 * matmul_size ** 3),
        f"conv_{dtype_name}": (tf.function(lambda: _total(_conv(x, k))), flops),
        f"conv_grad_{dtype_name}": (tf.function(conv_grad), 3 * flops),
    }


def conv_ops() -> Dict[str, Callable]:
    """The probe's convolution as the three ops of a training step: {op name: f(maps, kernel, output gradient)}."""
    import tensorflow as tf

    def backprop_input(x, k, dy):
        return _total(tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=k, out_backprop=dy, strides=[1, STRIDE, STRIDE, 1], padding="SAME"))

    def backprop_filter(x, k, dy):
        return _total(tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(k), out_backprop=dy, strides=[1, STRIDE, STRIDE, 1], padding="SAME"))

    return {
        "Conv2D": lambda x, k, dy: _total(_conv(x, k)),
        "Conv2DBackpropInput": backprop_input,
        "Conv2DBackpropFilter": backprop_filter,
    }


def _timed(function, *args, seconds: float) -> float:
    function(*args).numpy()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        result = function(*args)
        calls += 1
    result.numpy()
    return (time.perf_counter() - started) / calls


def main(argv=None) -> int:
    import tensorflow as tf

    parser = argparse.ArgumentParser(prog="python -m bench.bf16_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing")
    args = parser.parse_args(argv)
    inputs32 = conv_inputs(BATCH, tf.float32)
    functions = {name: tf.function(function) for name, function in conv_ops().items()}
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

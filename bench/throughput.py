"""Pretraining throughput of our SimCLR/SimSiam/BYOL steps against a keras-io reference step.

    python -m bench.throughput --rounds 3 --steps 20 [--quick] [--output DIR_OR_FILE.json]

What it measures (images per second; each image counted once, with its two augmented views):

* every variant (method x precision x XLA, and the reference step of `bench.reference`) fed from
  decoded images held in memory;
* some variants also fed from the real TFRecords through `trainer.data.image_dataset` as the Trainer
  feeds it (decode on the first pass, then the decode cache; batch + prefetch), to show whether the
  input pipeline slows the step down;
* some variants also on the augmentation alone (the two views, no encoder): its share of the step;
* a matmul / conv2d micro-benchmark in float32 and bfloat16, to show what this CPU gains from bf16;
* the utilisation of every train step: its FLOPs per image, counted from the ops of the traced
  `train_step` (`bench.flops`), times its images/s, as a share of the micro-benchmark's highest
  rate in the step's compute dtype (the "peak").

How: the parent process (no TensorFlow) starts one long-lived worker process per variant (the mixed
precision policy and XLA are per process). Each worker builds its model, compiles and warms it up,
then waits. The parent then runs `--rounds` rounds; in each round every (variant, feed) pair runs
`--steps` steps, one worker at a time, in an order rotated (and reversed every other round) from round
to round, so that noise from other processes on the machine hits every variant. Ratios (ours /
reference, TFRecords / memory, fast path / float32) are taken within a round, then summarised as
min / median / max over rounds. The load average and the worker's CPU seconds are recorded with every
measurement, and every ratio is also given per CPU-second of the measured worker, which is far less
sensitive to other processes taking cores than the rate per wall-clock second. The train step is run
through Keras's own `train_function` (what `fit` calls) and its traces are counted: a retrace while
measuring would mean Python work per step.

Nothing in `trainer/` is changed: mixed precision is set with
`keras.mixed_precision.set_global_policy(...)`, XLA with `model.compile(jit_compile=True)` and a
MirroredStrategy (Variant.strategy) with `trainer.distribute.build_strategy` inside the worker. A
variant that fails to build or compile is reported with the error and, for XLA, the ops XLA could not
compile.

The workers, rounds and summaries are `bench.harness`'s, the machine record `bench.machine`'s, the probe's
operations `bench.bf16_ops`'s; this module holds the benchmark: its variants, the worker that builds and runs
one, the ratios, the FLOP utilisation and the table. `bench.gpu_check` runs its workers and sections too.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench import harness
from bench.bf16_ops import PROBE_OPERATIONS, probe_feeds, probe_operations
from trainer import log

LOG = log.get(__name__)

MEMORY, TFRECORD, AUGMENT_ONLY, TFRECORD_ONLY = "memory", "tfrecord", "augment_only", "tfrecord_only"
STEP_FEEDS = (MEMORY, TFRECORD)
# The dtype the matrix units compute in under each Keras dtype policy: the probe's peak to compare with.
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}

PROBE_FEEDS = probe_feeds(("float32", "bfloat16"))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model configuration, run in its own worker process.

    model: "reference" (bench.reference, keras-io), "simclr", "simsiam", "byol" (trainer.methods),
      or "probe" (matmul / conv micro-benchmark).
    precision: a Keras dtype policy name: "float32", "mixed_bfloat16" or "mixed_float16".
    xla: compile the train step with XLA (model.compile(jit_compile=True)); False keeps the default
      ("auto", which Keras resolves to no XLA on a CPU-only machine, as in `selfsup run`).
    feeds: what is measured: "memory" (the train step on decoded images held in memory), "tfrecord"
      (the train step fed by trainer.data.image_dataset from the TFRecords), "augment_only" (only the
      two augmented views of a memory batch, no encoder: the augmentation's share of the step),
      "tfrecord_only" (only trainer.data.image_dataset's batches, no step: what the input pipeline can
      feed); for the probe, `probe_feeds(dtypes)`.
    strategy: "default" or "mirrored" (tf.distribute.MirroredStrategy over every visible GPU, built by
      trainer.distribute; the model is built and the batches are split across its replicas).
    """

    name: str
    model: str
    precision: str = "float32"
    xla: bool = False
    feeds: Tuple[str, ...] = (MEMORY,)
    strategy: str = "default"


ALL_VARIANTS = (
    Variant("reference", "reference", feeds=(MEMORY, AUGMENT_ONLY)),
    Variant("simclr", "simclr", feeds=(MEMORY, TFRECORD, AUGMENT_ONLY)),
    Variant("simsiam", "simsiam"),
    Variant("byol", "byol"),
    Variant("simclr+xla", "simclr", xla=True, feeds=(MEMORY, AUGMENT_ONLY)),
    Variant("simclr+bf16", "simclr", precision="mixed_bfloat16"),
    Variant("simclr+bf16+xla", "simclr", precision="mixed_bfloat16", xla=True),
    Variant("reference+xla", "reference", xla=True),
    Variant("probe", "probe", feeds=PROBE_FEEDS),
    # Not in the default set (time): pass them with --variants.
    Variant("simsiam+xla", "simsiam", xla=True),
    Variant("byol+xla", "byol", xla=True),
    Variant("simclr+xla+tfrecord", "simclr", xla=True, feeds=(MEMORY, TFRECORD)),
    Variant("simsiam+bf16+xla", "simsiam", precision="mixed_bfloat16", xla=True),
    Variant("byol+bf16+xla", "byol", precision="mixed_bfloat16", xla=True),
)
FULL_VARIANTS = ALL_VARIANTS[:9]
QUICK_VARIANTS = (
    Variant("reference", "reference"),
    Variant("simclr", "simclr", feeds=(MEMORY, TFRECORD)),
    Variant("probe", "probe", feeds=probe_feeds(("float32",))),
)
# Ratios reported, as (numerator, denominator) of (variant, feed) pairs measured in the same round.
BASELINE = ("reference", MEMORY)
OURS_DEFAULT = ("simclr", MEMORY)


# ----------------------------------------------------------------------------------------------
# Worker process: builds one variant, then runs measurement commands read from stdin.
# ----------------------------------------------------------------------------------------------

def _build_model(variant: Variant, batch_size: int, image_size: int, width: int, seed: int):
    import keras

    if variant.model == "reference":
        from bench.reference import ReferenceSimCLR

        model = ReferenceSimCLR(width=width, image_size=image_size, name="reference_simclr")
        model.build((None, image_size, image_size, 3))
        model.compile(optimizer=keras.optimizers.Adam(), jit_compile=True if variant.xla else "auto")
        return model, "c_loss"

    from trainer.augment import build_pretrain_augmenter
    from trainer.encoders import build_encoder
    from trainer.hparams import TrainingConfig
    from trainer.methods import build_method
    from trainer.optimizers import build_optimizer

    config = TrainingConfig(method=variant.model, batch_size=batch_size, image_size=image_size,
                            encoder_width=width, projection_dim=width, projection_hidden_dim=width, seed=seed)
    def make_encoder():
        return build_encoder(config.encoder, config.image_size, config.encoder_width, config.encoder_weights)

    steps_per_epoch = max(1, 20_000 // batch_size)  # as for the 20,000 unlabeled cifar10-ssl images
    augmenter = build_pretrain_augmenter(config.pretrain_augment, config.image_size, config.seed)
    model = build_method(config, make_encoder(), augmenter, False, make_encoder, steps_per_epoch)
    optimizer = build_optimizer(config.optimizer, config.pretrain_learning_rate, config.weight_decay,
                                config.pretrain_epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch)
    # "auto" is what `selfsup run` compiles with (Keras turns XLA off on CPU-only machines).
    model.compile(optimizer=optimizer, jit_compile=True if variant.xla else "auto")
    return model, "loss"


def _datasets(feeds: Sequence[str], tfrecords: str, batch_size: int, image_size: int, seed: int,
              memory_images: int):
    import tensorflow as tf

    from trainer import data

    datasets = {}
    if MEMORY in feeds or AUGMENT_ONLY in feeds:
        batches = max(1, memory_images // batch_size)
        source = data.image_dataset([tfrecords], batch_size, image_size, seed, shuffle=False).take(batches)
        images = tf.concat(list(source), axis=0)
        datasets[MEMORY] = (tf.data.Dataset.from_tensor_slices(images).batch(batch_size, drop_remainder=True)
                            .cache().repeat().prefetch(2))
    if TFRECORD in feeds or TFRECORD_ONLY in feeds:
        # The Trainer's feed: decoded on the first pass, then read from the decode cache (its default budget).
        from trainer.hparams import TrainingConfig

        images = int(data.records([tfrecords]).reduce(0, lambda count, _: count + 1))
        datasets[TFRECORD] = data.image_dataset([tfrecords], batch_size, image_size, seed,
                                                cache=data.DecodeCache.from_config(TrainingConfig()),
                                                images=images, name="bench TFRecords").repeat()
    return datasets


def _probe_worker(args, variant: Variant) -> None:
    """Micro-benchmark (bench.bf16_ops's probe) in the dtypes of the variant's feeds (float32, bfloat16, float16):
    a square matmul (--probe-matmul-size), and the encoder's second convolution forward, and forward + both
    gradients."""
    import tensorflow as tf

    operations = {}
    for dtype_name in dict.fromkeys(feed.rsplit("_", 1)[1] for feed in variant.feeds):
        operations.update(probe_operations(dtype_name, args.probe_matmul_size, 32 if args.quick else 512))
    first, repeats = {}, {}
    for name, (function, _) in operations.items():
        started = time.perf_counter()
        function().numpy()
        first[name] = time.perf_counter() - started
        started = time.perf_counter()
        function().numpy()
        repeats[name] = max(2, min(200, int(args.probe_seconds / max(time.perf_counter() - started, 1e-4))))
    harness.send("READY", {"tensorflow": tf.__version__, "first_step_seconds": first, "traces": None,
                           "jit_compile": False, "policy": None, "peak_rss_mb": harness.peak_rss_mb(),
                           "probe_repeats": repeats, "step_seconds": None})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            return
        feed = command[1]
        function, flops = operations[feed]

        def run(function=function, feed=feed):
            for _ in range(repeats[feed]):
                value = function()
            return value.numpy()

        _, timing = harness.timed(run)
        harness.send("RESULT", {**timing, "work": repeats[feed] * flops / 1e9, "unit": "GFLOP/s", "loss": None,
                                "steps": repeats[feed]})


def _strategy(name: str):
    """(the tf.distribute strategy called `name`, the devices its replicas run on)."""
    import tensorflow as tf

    if name == "default":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.get_strategy(), [gpus[0].name if gpus else "/device:CPU:0"]
    from trainer.distribute import build_strategy

    strategy = build_strategy(name)
    return strategy, list(strategy.extended.worker_devices)


def _count_flops(model, train_step, variant: Variant, batch_size: int, image_size: int) -> Optional[dict]:
    """The train step's FLOPs (bench.flops, traced under the default strategy: None under another one,
    whose replicas run the same ops per image) and the encoder's forward FLOPs per image."""
    from bench.flops import train_step_flops
    from trainer.encoders import forward_flops

    if variant.strategy != "default":
        return None
    counted = train_step_flops(train_step, batch_size, image_size)
    return {**counted, "encoder_forward_per_image": forward_flops(model.encoder)}


def worker_main(args) -> int:
    spec = json.loads(args.worker)
    variant = Variant(**{**spec, "feeds": tuple(spec["feeds"])})
    if variant.model == "probe":
        _probe_worker(args, variant)
        return 0
    import keras
    import tensorflow as tf

    try:
        if variant.precision != "float32":
            keras.mixed_precision.set_global_policy(variant.precision)
        keras.utils.set_random_seed(args.seed)
        strategy, replica_devices = _strategy(variant.strategy)
        datasets = _datasets(variant.feeds, args.tfrecords, args.batch_size, args.image_size, args.seed,
                             args.memory_images)
        with strategy.scope():
            model, loss_key = _build_model(variant, args.batch_size, args.image_size, args.width, args.seed)
        traces = {"count": 0}
        train_step = model.train_step

        def counted_train_step(data):
            traces["count"] += 1  # Python runs only while tracing: this counts traces, not steps.
            return train_step(data)

        model.train_step = counted_train_step
        model.make_train_function()
        sources = {AUGMENT_ONLY: MEMORY, TFRECORD_ONLY: TFRECORD}
        iterators = {}
        for feed in variant.feeds:
            dataset = datasets[sources.get(feed, feed)]
            # The train step of a MirroredStrategy takes a distributed iterator (as fit makes one).
            distributed = feed in STEP_FEEDS and variant.strategy != "default"
            iterators[feed] = iter(strategy.experimental_distribute_dataset(dataset) if distributed else dataset)
        augmenter = model.contrastive_augmenter if variant.model == "reference" else model.augmenter

        # Only the two views (what the train step does before the encoder), compiled like the step.
        def two_views(images):
            views_1 = augmenter(images, training=True)
            views_2 = augmenter(images, training=True)
            return tf.reduce_sum(tf.cast(views_1, tf.float32)) + tf.reduce_sum(tf.cast(views_2, tf.float32))

        two_views = tf.function(two_views, jit_compile=bool(model.jit_compile))
        augment_step = tf.function(lambda iterator: two_views(iterator.get_next()))

        def run_steps(feed, steps):
            if steps <= 0:
                return float("nan")
            iterator = iterators[feed]
            if feed == AUGMENT_ONLY:
                for _ in range(steps):
                    value = augment_step(iterator)
                return float(value.numpy())
            if feed == TFRECORD_ONLY:
                for _ in range(steps):
                    batch = next(iterator)
                return float(batch[0, 0, 0, 0])
            logs = None
            for _ in range(steps):
                logs = model.train_function(iterator)
            if hasattr(logs, "get_value"):
                logs = logs.get_value()
            return float(logs[loss_key].numpy())

        first_step, step_seconds = {}, {}
        for feed in variant.feeds:
            started = time.perf_counter()
            run_steps(feed, 1)
            first_step[feed] = time.perf_counter() - started
            started = time.perf_counter()
            run_steps(feed, args.warmup_steps)
            step_seconds[feed] = (time.perf_counter() - started) / args.warmup_steps if args.warmup_steps else None
        flops = _count_flops(model, train_step, variant, args.batch_size, args.image_size)
    except Exception as error:  # a variant that cannot build or compile is a result, not a crash
        harness.send("FAILED", harness.describe_failure(error))
        return 1
    harness.send("READY", {
        "tensorflow": tf.__version__, "keras": keras.__version__, "first_step_seconds": first_step,
        "step_seconds": step_seconds, "traces": traces["count"], "jit_compile": bool(model.jit_compile),
        # Keras silently compiles without XLA when a layer declares supports_jit=False: name them.
        "layers_without_jit": sorted(f"{type(layer).__name__} ({layer.name})" for layer in model._flatten_layers()
                                     if not getattr(layer, "supports_jit", True)),
        "policy": keras.mixed_precision.global_policy().name, "peak_rss_mb": harness.peak_rss_mb(),
        "encoder_parameters": int(model.encoder.count_params()), "flops": flops,
        "replicas": strategy.num_replicas_in_sync, "replica_devices": replica_devices,
    })
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            return 0
        _, feed, steps = command
        steps = int(steps)
        try:
            loss, timing = harness.timed(lambda feed=feed, steps=steps: run_steps(feed, steps))
        except Exception as error:
            harness.send("FAILED", harness.describe_failure(error))
            return 1
        harness.send("RESULT", {**timing, "work": steps * args.batch_size, "unit": "images/s", "loss": loss,
                                "traces": traces["count"], "steps": steps})
    return 0


# ----------------------------------------------------------------------------------------------
# Parent process: data, workers, rounds, summary.
# ----------------------------------------------------------------------------------------------

# The settings a worker takes on its command line (--batch-size ...), besides its variant and --quick.
WORKER_SETTINGS = ("batch_size", "image_size", "width", "seed", "warmup_steps", "memory_images", "tfrecords",
                   "probe_seconds", "probe_matmul_size")


def worker_command(variant: Variant, settings: dict) -> List[str]:
    """The command line of the worker process of `variant` (`python -m bench.throughput --worker ...`)."""
    command = [sys.executable, "-m", "bench.throughput", "--worker", json.dumps(dataclasses.asdict(variant))]
    for key in WORKER_SETTINGS:
        command += [f"--{key.replace('_', '-')}", str(settings[key])]
    if settings["quick"]:
        command.append("--quick")
    return command


def start_workers(variants: Sequence[Variant], settings: dict, log_dir: pathlib.Path, building_at_once: int = 2,
                  deadline: Optional[float] = None) -> List[harness.Worker]:
    """One worker per variant (harness.start_workers): ready, or failed."""
    return harness.start_workers(variants, lambda variant: worker_command(variant, settings), log_dir,
                                 building_at_once, deadline)


def ratio_pairs(measured: List[Tuple[str, str]]) -> List[Tuple[Tuple[str, str], Tuple[str, str]]]:
    """Which ratios to report, among the (variant, feed) pairs that were measured.

    * every train step fed from memory / the keras-io reference step (ours / reference);
    * fed from TFRecords / fed from memory, same variant (1.0: the input pipeline costs nothing);
    * a fast path / the same method in float32 without XLA, same feed (the speed-up);
    * step / augmentation only, same variant: the share of the step's time spent making the two views;
    * bfloat16 / float32 of each micro-benchmark.
    """
    present = set(measured)
    pairs = []
    for item in measured:
        if item != BASELINE and item[1] == MEMORY and BASELINE in present:
            pairs.append((item, BASELINE))
    for name, feed in measured:
        if feed == TFRECORD and (name, MEMORY) in present:
            pairs.append(((name, TFRECORD), (name, MEMORY)))
    for name, feed in measured:
        method = name.split("+")[0]
        if feed in (MEMORY, TFRECORD, AUGMENT_ONLY) and method != name and (method, feed) in present:
            pairs.append(((name, feed), (method, feed)))
    for name, feed in measured:
        if feed == AUGMENT_ONLY and (name, MEMORY) in present:
            pairs.append(((name, MEMORY), (name, AUGMENT_ONLY)))
    for op in PROBE_OPERATIONS:
        if (("probe", f"{op}_bfloat16") in present) and (("probe", f"{op}_float32") in present):
            pairs.append((("probe", f"{op}_bfloat16"), ("probe", f"{op}_float32")))
    return pairs


def format_report(result: dict, title: str = "selfsup throughput benchmark") -> str:
    lines = []
    machine = result["machine"]
    lines.append(f"{title}, {result['date']} on {machine['hostname']}: {machine['nproc']} CPUs, "
                 f"{machine['cpu_model']}, TF {result.get('tensorflow')}, Keras {result.get('keras')}")
    flags = ", ".join(f"{flag}={'yes' if present else 'no'}" for flag, present in machine["cpu_flags"].items())
    lines.append(f"CPU flags: {flags}")
    settings = result["settings"]
    lines.append(f"batch {settings['batch_size']}, {settings['image_size']}x{settings['image_size']} images, "
                 f"width {settings['width']}, {settings['rounds']} rounds x {settings['steps']} steps"
                 f"{' (QUICK smoke mode: not a measurement)' if settings['quick'] else ''}")
    lines.append("")
    header = (f"{'variant':<26}{'feed':<17}{'rate min':>10}{'median':>10}{'max':>10}  {'unit':<9}"
              f"{'per CPU-s':>10}{'1st step s':>11}{'retraces':>9}  {'XLA':<6}{'policy':<15}"
              f"{'MFLOP/img':>10}{'GFLOP/s':>9}{'% peak':>8}")
    usage = result.get("utilisation", {})
    lines.append(header)
    lines.append("-" * len(header))
    for variant in result["variants"]:
        name = variant["name"]
        if variant["status"] != "ok":
            ops = variant["failure"].get("xla_unsupported_ops") or variant["failure"].get("ops_without_kernel")
            reason = f"unsupported ops: {', '.join(ops)}" if ops else variant["failure"]["error"].splitlines()[0][:90]
            lines.append(f"{name:<26}FAILED ({variant['failure']['error_type']}): {reason}")
            continue
        for feed in variant["feeds"]:
            stats = result["summary"].get(f"{name}[{feed}]")
            if not stats:
                continue
            first = variant["first_step_seconds"].get(feed, 0.0)
            # "off!": XLA was asked for (jit_compile=True) but Keras compiled without it.
            xla = "yes" if variant.get("jit_compile") else ("off!" if variant.get("xla") else "no")
            lines.append(
                f"{name:<26}{feed:<17}{stats['rate']['min']:>10.1f}{stats['rate']['median']:>10.1f}"
                f"{stats['rate']['max']:>10.1f}  {stats['unit']:<9}{stats['rate_per_cpu_second']['median']:>10.1f}"
                f"{first:>11.1f}{str(variant.get('retraces_while_measured')):>9}  {xla:<6}"
                f"{str(variant.get('policy')):<15}{_utilisation_columns(usage.get(f'{name}[{feed}]'))}"
            )
    refused = [variant for variant in result["variants"] if variant.get("xla") and variant["status"] == "ok"
               and not variant.get("jit_compile")]
    for variant in refused:
        layers = ", ".join(variant.get("layers_without_jit") or []) or "see the worker log"
        lines.append(f"XLA off! {variant['name']}: jit_compile=True was refused by Keras (layers with "
                     f"supports_jit=False: {layers}); it ran without XLA")
    lines.extend(_utilisation_notes(result["variants"], usage))
    lines.append("")
    lines.append(f"{'ratio (same round)':<62}{'per wall-clock second':>24}   {'per CPU-second':>24}")
    lines.append(f"{'':<62}{'min':>8}{'median':>8}{'max':>8}   {'min':>8}{'median':>8}{'max':>8}")
    per_cpu = result.get("ratios_per_cpu_second", {})
    for key, stats in result["ratios"].items():
        cpu = per_cpu.get(key)
        cpu_text = f"{cpu['min']:>8.2f}{cpu['median']:>8.2f}{cpu['max']:>8.2f}" if cpu else ""
        lines.append(f"{key:<62}{stats['min']:>8.2f}{stats['median']:>8.2f}{stats['max']:>8.2f}   {cpu_text}")
    load = result["load"]
    lines.append("")
    lines.append(f"load average (1 min) during the measurements: min {load['min']:.2f}, median {load['median']:.2f}, "
                 f"max {load['max']:.2f} on {machine['nproc']} CPUs; CPU share of the measured worker: median "
                 f"{result['cpu_share']['median']:.2f} cores")
    return "\n".join(lines)


def _utilisation_columns(usage: Optional[dict]) -> str:
    """MFLOP/img, GFLOP/s and % of the peak of one train-step row (blank for other rows)."""
    if not usage:
        return ""
    share = f"{100 * usage['share_of_peak']:>8.1f}" if usage["share_of_peak"] is not None else f"{'-':>8}"
    return f"{usage['flops_per_image'] / 1e6:>10.1f}{usage['achieved_gflops']:>9.1f}{share}"


def _utilisation_notes(variants: List[dict], usage: Dict[str, dict]) -> List[str]:
    """Where the FLOPs and the peaks come from, under the table."""
    if not usage:
        return []
    lines = ["MFLOP/img: one train step's FLOPs per image, counted from the ops of the traced train_step "
             "(bench.flops; the two views, forward, gradients, optimizer); encoder forward per image:"]
    for variant in variants:
        flops = variant.get("flops")
        if flops and flops.get("encoder_forward_per_image"):
            forward, step = flops["encoder_forward_per_image"], flops["per_image"]
            lines.append(f"  {variant['name']}: {forward / 1e6:.1f} MFLOP forward, step {step / 1e6:.1f} MFLOP = "
                         f"{step / forward:.2f} x forward")
    peaks = sorted({(row["compute_dtype"], row["peak_gflops"] / row["replicas"], row["peak_from"])
                    for row in usage.values() if row["peak_gflops"]})
    for dtype, peak, source in peaks:
        lines.append(f"% peak: achieved GFLOP/s / the probe's highest median rate in {dtype}: {peak:.1f} GFLOP/s "
                     f"({source}) per replica")
    missing = sorted({row["compute_dtype"] for row in usage.values() if not row["peak_gflops"]})
    if missing:
        lines.append(f"% peak not given for {', '.join(missing)}: the probe did not run in that dtype")
    return lines


def variant_records(workers: Sequence[harness.Worker], measurements: List[dict]) -> List[dict]:
    """Each worker's variant, status, failure and READY payload (build details, FLOPs), for the JSON."""
    return [
        {**dataclasses.asdict(worker.variant), "status": "ok" if worker.ready and not worker.failure else "failed",
         "failure": worker.failure, **(worker.ready or {}),
         "retraces_while_measured": harness.retraces(worker.variant.name, worker.ready, measurements)}
        for worker in workers
    ]


def utilisation(variants: List[dict], summary: Dict[str, dict]) -> Dict[str, dict]:
    """The FLOP utilisation of every train step measured (feeds memory and tfrecord).

    Per "variant[feed]": the train step's FLOPs per image counted by bench.flops (a variant under another
    strategy than the default takes those of the same model's default-strategy variant: the same ops
    per image), the achieved GFLOP/s (median images/s x FLOPs per image), and its share of the peak: the
    highest median rate of the probe's micro-benchmarks in the step's compute dtype (float32 for
    float32, bfloat16 for mixed_bfloat16, float16 for mixed_float16) times the step's replicas. The peak
    is None when the probe did not run in that dtype.
    """
    counted = {}
    for variant in variants:
        if variant.get("flops") and variant.get("flops").get("per_image"):
            counted.setdefault(variant["model"], (variant["name"], variant["flops"]["per_image"]))
    peaks = {}  # dtype -> (GFLOP/s, "variant[feed]")
    for key, stats in summary.items():
        if stats["unit"] == "GFLOP/s":
            dtype = stats["feed"].rsplit("_", 1)[1]
            if dtype not in peaks or stats["rate"]["median"] > peaks[dtype][0]:
                peaks[dtype] = (stats["rate"]["median"], key)
    by_name = {variant["name"]: variant for variant in variants}
    result = {}
    for key, stats in summary.items():
        variant = by_name.get(stats["variant"])
        if stats["feed"] not in STEP_FEEDS or not variant or variant["model"] not in counted:
            continue
        counted_in, flops_per_image = counted[variant["model"]]
        achieved = stats["rate"]["median"] * flops_per_image / 1e9
        dtype = COMPUTE_DTYPES.get(variant["precision"], variant["precision"])
        replicas = variant.get("replicas") or 1
        peak, peak_key = peaks.get(dtype, (None, None))
        result[key] = {
            "flops_per_image": flops_per_image, "flops_counted_in": counted_in, "achieved_gflops": achieved,
            "compute_dtype": dtype, "replicas": replicas, "peak_gflops": peak * replicas if peak else None,
            "peak_from": peak_key, "share_of_peak": achieved / (peak * replicas) if peak else None,
        }
    return result


def measurement_sections(variant_rows: List[dict], measurements: List[dict]) -> dict:
    """The result's summary, utilisation, ratios and ratios_per_cpu_second (bench.throughput's and
    bench.gpu_check's JSON, and --report)."""
    items = list(dict.fromkeys((m["variant"], m["feed"]) for m in measurements))
    summary = harness.summarize_measurements(measurements)
    return {"summary": summary, "utilisation": utilisation(variant_rows, summary),
            **harness.ratio_sections(measurements, ratio_pairs(items))}


def parent_main(args) -> int:
    from bench import data_prep

    started = time.time()
    quick = args.quick
    settings = {
        "batch_size": args.batch_size or (32 if quick else 256),
        "image_size": 32,
        "width": args.width or (16 if quick else 128),
        "seed": args.seed,
        "warmup_steps": 0 if quick else args.warmup_steps,
        "memory_images": 64 if quick else 2048,
        "probe_seconds": 0.2 if quick else args.probe_seconds,
        "probe_matmul_size": 256 if quick else 1024,
        "quick": quick,
    }
    steps = min(args.steps, 2) if quick else args.steps
    rounds = min(args.rounds, 2) if quick else args.rounds
    tfrecord_images = args.tfrecord_images or (64 if quick else 2048)
    variants = QUICK_VARIANTS if quick else FULL_VARIANTS
    if args.variants:
        wanted = args.variants.split(",")
        known = {variant.name: variant for variant in ALL_VARIANTS}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {sorted(known)}")
        variants = tuple(known[name] for name in wanted)

    cache_dir = pathlib.Path(args.cache_dir)
    if args.tfrecords:
        tfrecords = args.tfrecords
        LOG.info("TFRecords: %s (given)", tfrecords)
    else:
        source = pathlib.Path(args.data) if args.data else data_prep.cifar_folder(cache_dir)
        LOG.info("TFRecords: %d unlabeled images of %s (ingested with selfsup's ingest once, cached in %s)",
                 tfrecord_images, source, cache_dir)
        tfrecords = data_prep.cached_unlabeled_tfrecords(source, cache_dir, tfrecord_images)
    settings["tfrecords"] = tfrecords

    workers = start_workers(variants, settings, cache_dir / "worker_logs")
    measurements = harness.measure_rounds(workers, rounds, steps, 0.0 if quick else args.pause, args.max_seconds)
    harness.stop_workers(workers)

    any_ready = next((worker.ready for worker in workers if worker.ready and worker.ready.get("keras")), {})
    variant_rows = variant_records(workers, measurements)
    result = {
        **harness.result_header("bench.throughput"),
        "tensorflow": any_ready.get("tensorflow"),
        "keras": any_ready.get("keras"),
        "settings": {**settings, "steps": steps, "rounds": rounds, "tfrecord_images": tfrecord_images},
        "variants": variant_rows,
        "measurements": measurements,
        **measurement_sections(variant_rows, measurements),
        **harness.load_sections(measurements),
        "wall_seconds": time.time() - started,
    }
    path = harness.write_result(result, args.output, "selfsup_throughput")
    print()
    print(format_report(result))
    print(f"\nresults: {path} ({result['wall_seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds (default 3)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: tiny model and batch, 2 variants, <= 2 rounds x 2 steps (not a measurement)")
    parser.add_argument("--output", default="/tmp", help="JSON file (*.json) or folder for it (default /tmp)")
    parser.add_argument("--variants", help=f"comma-separated subset of: "
                                           f"{', '.join(variant.name for variant in ALL_VARIANTS)} (default: the first "
                                           f"{len(FULL_VARIANTS)})")
    parser.add_argument("--data", help="unpacked cifar10-ssl folder (default: extracted into --cache-dir)")
    parser.add_argument("--cache-dir", default="/tmp/selfsup_bench",
                        help="extracted dataset, cached TFRecords and worker logs (default /tmp/selfsup_bench)")
    parser.add_argument("--tfrecord-images", type=int, default=0, help="unlabeled images ingested (default 2048)")
    parser.add_argument("--tfrecords", help="use these gzipped tf.Example TFRecords (e.g. an ImageExampleGen "
                                            "'Split-unlabeled/*' pattern) instead of ingesting a sample")
    parser.add_argument("--batch-size", type=int, default=0, help="default 256 (32 with --quick)")
    parser.add_argument("--width", type=int, default=0, help="encoder width, default 128 (16 with --quick)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps run after compiling, before measuring")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of idle between measurements")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="a slow variant runs fewer steps (at least 3) so that a measurement takes about this long")
    parser.add_argument("--probe-seconds", type=float, default=1.5, help="length of one micro-benchmark measurement")
    parser.add_argument("--report", help="print the table of a JSON file written earlier, and exit")
    # Worker mode (internal).
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--memory-images", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--probe-matmul-size", type=int, default=1024, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.report:
        result = json.loads(pathlib.Path(args.report).read_text())
        result.update(measurement_sections(result["variants"], result["measurements"]))
        print(format_report(result))
        return 0
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())


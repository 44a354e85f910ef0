"""The benchmarks' harness: worker processes, timing rounds, the load average, summaries and the JSON result.

A benchmark that measures several variants (`bench.throughput`, and through it `bench.gpu_check`) runs each
variant in a long-lived worker process speaking a line protocol on stdout (`BENCH READY|RESULT|FAILED {json}`,
`send`); the parent (no TensorFlow) starts the workers (`start_workers`), runs `rounds` rounds in which every
(variant, feed) pair runs once, one worker at a time, in an order rotated from round to round
(`round_orders`, `measure_rounds`), and summarises the rates as min / median / max over rounds
(`summarize_measurements`, `compute_ratios`), with the load average and the measured worker's CPU seconds
(`load_sections`). `output_path` and `write_result` place the JSON.

This module imports no TensorFlow: the parents stay free of it.
"""

import datetime
import json
import os
import pathlib
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bench.machine import machine_info
from trainer import log

LOG = log.get(__name__)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOCOL_PREFIX = "BENCH "


# ----------------------------------------------------------------------------------------------
# The worker side of the protocol.
# ----------------------------------------------------------------------------------------------

def send(kind: str, payload: dict) -> None:
    """Writes one protocol message (READY, RESULT or FAILED) on stdout."""
    sys.stdout.write(f"{PROTOCOL_PREFIX}{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def describe_failure(error: BaseException) -> dict:
    """The error's type, its first lines, and the op names XLA or the CPU kernels refused, if named."""
    text = f"{type(error).__name__}: {error}"
    unsupported = sorted(set(re.findall(r"No registered '([A-Za-z0-9_]+)' OpKernel for XLA", text)))
    no_kernel = sorted(set(re.findall(r"Could not find device for node: \{\{node ([A-Za-z0-9_]+)\}\}", text))
                       | set(re.findall(r"No OpKernel was registered to support Op '([A-Za-z0-9_]+)'", text)))
    return {
        "error_type": type(error).__name__,
        "error": text[:4000],
        "xla_unsupported_ops": unsupported,
        "ops_without_kernel": no_kernel,
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    times = os.times()
    return times.user + times.system


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(run: Callable[[], object]) -> Tuple[object, dict]:
    """Runs `run()` once: (its value, the first keys of a RESULT message: "seconds" and "cpu_seconds" it took,
    the load average before and after)."""
    cpu_before, load_before = cpu_seconds(), os.getloadavg()
    started = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - started
    return value, {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu_before, "load_before": load_before,
                   "load_after": os.getloadavg()}


# ----------------------------------------------------------------------------------------------
# The parent side: workers, rounds.
# ----------------------------------------------------------------------------------------------

class Worker:
    """A worker subprocess speaking the line protocol (BENCH READY/RESULT/FAILED {json}).

    `variant` is the benchmark's description of what the worker runs (it has a `name` and `feeds`);
    `command` the worker's command line, run from the repository root. `wait_ready` and `measure` take an
    optional timeout in seconds: a worker that does not answer in time is killed and reported as failed
    (WorkerTimeout).
    """

    def __init__(self, variant, command: Sequence[str], log_path: pathlib.Path):
        self.variant = variant
        self.log_path = log_path
        self.ready: Optional[dict] = None
        self.failure: Optional[dict] = None
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(list(command), cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True, env=env, bufsize=1)
        self._messages: "queue.Queue[Optional[Tuple[str, dict]]]" = queue.Queue()
        threading.Thread(target=self._pump, name=f"worker-{variant.name}", daemon=True).start()

    def _pump(self) -> None:
        """Puts every protocol message of the worker's stdout on the queue, then None at its end."""
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                kind, _, payload = line[len(PROTOCOL_PREFIX):].partition(" ")
                self._messages.put((kind, json.loads(payload)))
        self._messages.put(None)

    def _read(self, timeout: Optional[float] = None) -> Tuple[str, dict]:
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            self.process.wait()
            return "FAILED", {"error_type": "WorkerTimeout", "error": f"no answer in {timeout:.0f} s: the worker was "
                              f"stopped; stderr tail:\n{self._stderr_tail()}", "xla_unsupported_ops": [],
                              "ops_without_kernel": []}
        if message is not None:
            return message
        self._messages.put(None)
        self.process.wait()
        return "FAILED", {"error_type": "WorkerExit", "error": f"worker exited with code {self.process.returncode}; "
                          f"stderr tail:\n{self._stderr_tail()}", "xla_unsupported_ops": [],
                          "ops_without_kernel": []}

    def _stderr_tail(self, characters: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-characters:]

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        kind, payload = self._read(timeout)
        if kind == "READY":
            self.ready = payload
            return True
        self.failure = payload
        self.stop()
        return False

    def measure(self, feed: str, steps: int, timeout: Optional[float] = None) -> Optional[dict]:
        self.process.stdin.write(f"run {feed} {steps}\n")
        self.process.stdin.flush()
        kind, payload = self._read(timeout)
        if kind == "RESULT":
            return payload
        self.failure = payload
        self.stop()
        return None

    def request_quit(self) -> None:
        """Asks the worker to exit, without waiting."""
        if self.process.poll() is None and not self.process.stdin.closed:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def stop(self) -> None:
        """Asks the worker to exit and waits for it (killing this worker only if it does not exit in 60 s)."""
        self.request_quit()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def seconds_until(deadline: Optional[float]) -> Optional[float]:
    """Seconds left until `deadline` (a time.time() value; at least 1), or None without a deadline."""
    return None if deadline is None else max(1.0, deadline - time.time())


def start_workers(variants: Sequence, command_for: Callable[[object], List[str]], log_dir: pathlib.Path,
                  building_at_once: int = 2, deadline: Optional[float] = None) -> List[Worker]:
    """One worker per variant (its command line `command_for(variant)`), at most `building_at_once` building and
    compiling at a time; returns when every worker is ready (idle, waiting for commands) or has failed (a worker
    not ready by `deadline`, a time.time() value, is stopped and counts as failed)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    LOG.info("starting %d workers (build, compile, warm up); logs in %s", len(variants), log_dir)
    workers = []
    for index, variant in enumerate(variants):
        if index >= building_at_once:  # nothing is measured yet
            workers[index - building_at_once].wait_ready(seconds_until(deadline))
        workers.append(Worker(variant, command_for(variant), log_dir / f"{variant.name}.log"))
    for worker in workers:
        if worker.ready is None and worker.failure is None:
            worker.wait_ready(seconds_until(deadline))
    for worker in workers:
        state = "ready" if worker.ready else f"FAILED: {worker.failure['error'].splitlines()[0][:200]}"
        LOG.info("  %s: %s", worker.variant.name, state)
    return workers


def steps_for(worker: Worker, feed: str, steps: int, max_seconds: float) -> int:
    """`steps`, or fewer (at least 3) when the warm-up says they would take longer than `max_seconds`."""
    step_seconds = (worker.ready.get("step_seconds") or {}).get(feed)
    if not step_seconds:
        return steps
    return max(min(steps, 3), min(steps, int(max_seconds / step_seconds)))


def round_orders(items: List[Tuple[str, str]], rounds: int) -> List[List[Tuple[str, str]]]:
    """Round r runs the items rotated by r positions, reversed on odd rounds (so no item always follows another)."""
    orders = []
    for index in range(rounds):
        shift = index % len(items)
        order = items[shift:] + items[:shift]
        orders.append(order[::-1] if index % 2 else order)
    return orders


def measure_rounds(workers: Sequence[Worker], rounds: int, steps: int, pause: float, max_seconds: float,
                   deadline: Optional[float] = None, steps_by_feed: Optional[Dict[str, int]] = None) -> List[dict]:
    """`rounds` rounds over every (variant, feed) pair of the ready workers, one worker at a time, in
    `round_orders`; returns one measurement dict per pair and round (a worker that has not answered by
    `deadline` is stopped and counts as failed). `steps_by_feed` gives some feeds another number of steps."""
    live = [worker for worker in workers if worker.ready]
    items = [(worker.variant.name, feed) for worker in live for feed in worker.variant.feeds]
    by_name = {worker.variant.name: worker for worker in workers}
    measurements = []
    for round_index, order in enumerate(round_orders(items, rounds) if items else []):
        for name, feed in order:
            worker = by_name[name]
            if worker.failure:
                continue
            time.sleep(pause)  # let the previous worker's prefetch threads go idle
            feed_steps = (steps_by_feed or {}).get(feed, steps)
            result = worker.measure(feed, steps_for(worker, feed, feed_steps, max_seconds), seconds_until(deadline))
            if result is None:
                LOG.info("round %d: %s[%s] FAILED", round_index + 1, name, feed)
                continue
            rate = result["work"] / result["seconds"]
            measurement = {"round": round_index, "variant": name, "feed": feed, "rate": rate,
                           "rate_per_cpu_second": result["work"] / max(result["cpu_seconds"], 1e-9), **result}
            measurements.append(measurement)
            LOG.info(f"round {round_index + 1}/{rounds} {name:<24} {feed:<16} {rate:9.1f} {result['unit']:<9} "
                     f"cpu {result['cpu_seconds'] / result['seconds']:.2f} cores, load {result['load_before'][0]:.2f}")
    return measurements


def stop_workers(workers: Sequence[Worker]) -> None:
    """Asks every worker to quit first, then waits: they shut down in parallel."""
    for worker in workers:
        worker.request_quit()
    for worker in workers:
        worker.stop()


def retraces(name: str, ready: Optional[dict], measurements: List[dict]) -> Optional[int]:
    """How often the train step was traced again after warm-up (0: no Python work per step)."""
    counts = [m["traces"] for m in measurements if m["variant"] == name and m.get("traces") is not None]
    if not ready or ready.get("traces") is None or not counts:
        return None
    return max(counts) - ready["traces"]


# ----------------------------------------------------------------------------------------------
# Summaries and the JSON result.
# ----------------------------------------------------------------------------------------------

def summarize(values: List[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


EMPTY_SUMMARY = {"min": 0.0, "median": 0.0, "max": 0.0, "n": 0}


def summarize_measurements(measurements: List[dict]) -> Dict[str, dict]:
    """Per "variant[feed]": the unit, min / median / max of the rate (wall-clock and per CPU-second), the last loss."""
    items = list(dict.fromkeys((m["variant"], m["feed"]) for m in measurements))
    summary = {}
    for name, feed in items:
        rows = [m for m in measurements if m["variant"] == name and m["feed"] == feed]
        summary[f"{name}[{feed}]"] = {
            "variant": name, "feed": feed, "unit": rows[0]["unit"],
            "rate": summarize([m["rate"] for m in rows]),
            "rate_per_cpu_second": summarize([m["rate_per_cpu_second"] for m in rows]),
            "loss_last": rows[-1]["loss"],
        }
    return summary


def compute_ratios(measurements: List[dict], pairs: List[Tuple[Tuple[str, str], Tuple[str, str]]],
                   field: str = "rate") -> Dict[str, dict]:
    """For each (numerator, denominator) pair: per-round ratios of `field`, and their min/median/max.

    `field` is "rate" (per wall-clock second) or "rate_per_cpu_second" (per CPU-second of the measured
    worker: far less sensitive to other processes taking cores, since this machine has no SMT).
    """
    rates = {(m["round"], m["variant"], m["feed"]): m[field] for m in measurements}
    ratios = {}
    for numerator, denominator in pairs:
        per_round = [
            rates[(r, *numerator)] / rates[(r, *denominator)]
            for r in sorted({m["round"] for m in measurements})
            if (r, *numerator) in rates and (r, *denominator) in rates
        ]
        if per_round:
            key = f"{numerator[0]}[{numerator[1]}] / {denominator[0]}[{denominator[1]}]"
            ratios[key] = {**summarize(per_round), "per_round": per_round}
    return ratios


def ratio_sections(measurements: List[dict], pairs: List[Tuple[Tuple[str, str], Tuple[str, str]]]) -> dict:
    """The result's "ratios" (per wall-clock second) and "ratios_per_cpu_second" of `pairs`."""
    return {"ratios": compute_ratios(measurements, pairs),
            "ratios_per_cpu_second": compute_ratios(measurements, pairs, "rate_per_cpu_second")}


def load_sections(measurements: List[dict]) -> dict:
    """The result's "load" (the 1-minute load average before and after every measurement) and "cpu_share" (the
    measured worker's CPU seconds per second), each min / median / max."""
    loads = [m["load_before"][0] for m in measurements] + [m["load_after"][0] for m in measurements]
    return {"load": summarize(loads) if loads else dict(EMPTY_SUMMARY),
            "cpu_share": summarize([m["cpu_seconds"] / m["seconds"] for m in measurements]) if measurements
            else dict(EMPTY_SUMMARY)}


def result_header(module: str, argv: Optional[Sequence[str]] = None) -> dict:
    """The first keys of a benchmark's JSON: when, the command line (`python -m module ARGV`; sys.argv's
    arguments by default), the machine."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", "-m", module, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
    }


def output_path(output: str, prefix: str = "selfsup_throughput") -> pathlib.Path:
    """`output` if it names a .json file, else a new time-stamped file in the folder `output`."""
    path = pathlib.Path(output)
    if path.suffix == ".json":
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{prefix}_{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}.json"


def write_result(result: dict, output: str, prefix: str) -> pathlib.Path:
    """Writes `result` as indented JSON to `output_path(output, prefix)`; returns the path."""
    path = output_path(output, prefix)
    path.write_text(json.dumps(result, indent=2))
    return path

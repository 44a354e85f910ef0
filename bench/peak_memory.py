"""Peak memory (RSS) of `selfsup run` on the cifar10-ssl folder, and on a copy whose unlabeled set is doubled.

    python -m bench.peak_memory [--data DIR] [--output DIR_OR_FILE.json] [--interval 0.5] [--quick]

Runs `.venv/bin/selfsup run --data DIR --output OUT --config CFG` as a subprocess with a short config
(1 pretraining epoch, 1 linear epoch, no fine-tuning epochs; every other key at its default), once on the
unpacked folder and once on a copy whose unlabeled/ holds every unlabeled image twice (hard links), and samples
the resident set size of the whole process tree (the CLI, Beam and TFX workers) with psutil every
`--interval` seconds. Reported per run: the peak of the tree's summed RSS (pages shared between processes are
counted once per process, so this is an upper bound), the peak RSS of the largest single process, and the
progress line the CLI had printed last when the peak was sampled (which component was running).

If data is streamed, the peak stays about the same when the unlabeled set doubles.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import psutil

from bench import data_prep, harness
from trainer import log
from trainer.contract import SUMMARY_FILE

LOG = log.get(__name__)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SELFSUP = REPO_ROOT / ".venv" / "bin" / "selfsup"
SHORT_CONFIG = """# bench.peak_memory: a short run; every key not listed keeps its default.
training:
  pretrain_epochs: 1
  linear_epochs: 1
  finetune_epochs: 0
  monitor_every_epochs: 1
evaluation:
  min_accuracy: 0.0
"""
QUICK_CONFIG = """# bench.peak_memory --quick: smoke mode, tiny model.
training:
  encoder_width: 16
  projection_dim: 16
  projection_hidden_dim: 16
  batch_size: 32
  finetune_batch_size: 32
  pretrain_epochs: 1
  linear_epochs: 1
  finetune_epochs: 0
evaluation:
  min_accuracy: 0.0
"""


def _link_tree(source: pathlib.Path, destination: pathlib.Path, copies: int = 1) -> int:
    """Mirrors the image files of `source` under `destination` as hard links (data_prep.link_file), `copies`
    times each; returns the count."""
    count = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in data_prep.IMAGE_SUFFIXES:
            continue
        relative = path.relative_to(source)
        for copy in range(copies):
            data_prep.link_file(path, destination / (f"copy{copy}" if copies > 1 else "") / relative)
            count += 1
    return count


def build_folder(source: pathlib.Path, destination: pathlib.Path, unlabeled_copies: int) -> dict:
    """A folder of hard links: labeled/ and test/ as in `source`, unlabeled/ with every image `unlabeled_copies`
    times."""
    if destination.exists():
        shutil.rmtree(destination)
    counts = {"unlabeled": _link_tree(source / "unlabeled", destination / "unlabeled", unlabeled_copies)}
    for split in ("labeled", "test"):
        if (source / split).is_dir():
            counts[split] = _link_tree(source / split, destination / split)
    return counts


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every `interval` seconds."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples = []  # (seconds since start, total RSS MB, largest process RSS MB, processes)
        self.last_line = ""
        self.peak = {"total_mb": 0.0, "largest_process_mb": 0.0, "at_seconds": 0.0, "during": ""}
        self._stop_event = threading.Event()
        self._start_time = time.time()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                processes = [self.root] + self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss / 2 ** 20)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            if sizes:
                elapsed = time.time() - self._start_time
                total, largest = sum(sizes), max(sizes)
                self.samples.append((round(elapsed, 1), round(total, 1), round(largest, 1), len(sizes)))
                if total > self.peak["total_mb"]:
                    self.peak.update(total_mb=total, at_seconds=elapsed, during=self.last_line)
                self.peak["largest_process_mb"] = max(self.peak["largest_process_mb"], largest)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_and_sample(data_dir: pathlib.Path, output_dir: pathlib.Path, config_path: pathlib.Path, interval: float,
                   log_path: pathlib.Path) -> dict:
    if output_dir.exists():
        shutil.rmtree(output_dir)
    command = [str(SELFSUP), "run", "--data", str(data_dir), "--output", str(output_dir), "--config", str(config_path)]
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1)
        sampler = TreeSampler(process.pid, interval)
        sampler.start()
        for line in process.stdout:
            log.write(line)
            if line.strip():
                sampler.last_line = line.strip()[:200]
        process.wait()
        sampler.stop()
    summary_path = output_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "command": " ".join(command),
        "exit_code": process.returncode,
        "seconds": round(time.time() - started, 1),
        "peak_rss_tree_mb": round(sampler.peak["total_mb"], 1),
        "peak_rss_largest_process_mb": round(sampler.peak["largest_process_mb"], 1),
        "peak_at_seconds": round(sampler.peak["at_seconds"], 1),
        "peak_during": sampler.peak["during"],
        "status": summary.get("status"),
        "images": {split: counts.get("written") for split, counts in summary.get("data", {}).get("splits", {}).items()}
        if isinstance(summary.get("data", {}).get("splits"), dict) else None,
        "samples": sampler.samples,
        "log": str(log_path),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peak_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="unpacked cifar10-ssl folder (default: extracted into --work-dir)")
    parser.add_argument("--work-dir", default="/tmp/selfsup_bench", help="folders, run outputs and logs")
    parser.add_argument("--output", default="/tmp", help="JSON file (*.json) or folder for it (default /tmp)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 200 unlabeled images, 20 labeled per class for 2 classes, tiny model")
    args = parser.parse_args(argv)

    work_dir = pathlib.Path(args.work_dir)
    source = pathlib.Path(args.data) if args.data else data_prep.cifar_folder(work_dir)
    peak_dir = work_dir / ("peak_memory_quick" if args.quick else "peak_memory")
    peak_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        source = data_prep.sampled_folder(source, peak_dir / "sample", unlabeled=200, labeled_per_class=20,
                                          test_per_class=10)
    config_path = peak_dir / "config.yaml"
    config_path.write_text(QUICK_CONFIG if args.quick else SHORT_CONFIG)

    runs = []
    for label, copies in (("as is", 1), ("unlabeled doubled", 2)):
        folder = peak_dir / f"data_x{copies}"
        counts = build_folder(source, folder, copies)
        LOG.info("%s: %s -> selfsup run", label, counts)
        run = run_and_sample(folder, peak_dir / f"run_x{copies}", config_path, args.interval,
                             peak_dir / f"run_x{copies}.log")
        run.update(label=label, unlabeled_copies=copies, files=counts, load_after=os.getloadavg())
        runs.append(run)
        LOG.info(f"  exit {run['exit_code']} ({run['status']}) in {run['seconds']:.0f} s: peak RSS of the process "
                 f"tree {run['peak_rss_tree_mb']:.0f} MB, largest process {run['peak_rss_largest_process_mb']:.0f} MB, "
                 f"at {run['peak_at_seconds']:.0f} s during: {run['peak_during']}")

    result = {
        **harness.result_header("bench.peak_memory", argv),
        "config": config_path.read_text(),
        "runs": runs,
        "growth_when_unlabeled_doubles": round(runs[1]["peak_rss_tree_mb"] / max(runs[0]["peak_rss_tree_mb"], 1e-9), 3),
    }
    path = harness.write_result(result, args.output, "selfsup_peak_memory")
    print(f"peak RSS grows x{result['growth_when_unlabeled_doubles']:.2f} when the unlabeled set "
          f"doubles; results: {path}")
    return 0 if all(run["exit_code"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

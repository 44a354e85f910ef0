"""Label efficiency: supervised baseline vs each SSL method on an image folder, through the real pipeline.

    python -m bench.label_efficiency --data /tmp/cifar10-ssl --output /tmp/label-efficiency \
        --methods simclr simsiam byol --pretrain-epochs 10

Each method is one `selfsup run` (the CLI, LocalDagRunner, TFMA) into OUTPUT/<method>; the candidate
and the baseline are evaluated by TFMA on the same eval split. Prints a table and writes
OUTPUT/label_efficiency.json with the accuracies, the Trainers' seconds (from summary.json's `timings`)
and the machine (CPU model and flags). Running again into the same OUTPUT with only fine-tuning
settings changed (--extra-yaml) reuses the cached Pretrainer: an ablation of fine-tuning costs no
pretraining.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

from bench.machine import machine_info
from trainer.contract import SUMMARY_FILE
from trainer.hparams import METHODS


def write_config(path: str, method: str, pretrain_epochs: int, extra_yaml: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            f"training:\n  method: {method}\n  pretrain_epochs: {pretrain_epochs}\n"
            "  monitor_every_epochs: 5\n" + (extra_yaml.rstrip("\n") + "\n" if extra_yaml else "")
            + "evaluation:\n  min_accuracy: 0.0\n  margin: 0.0\n"
        )


def run_method(data: str, output_root: str, method: str, pretrain_epochs: int, extra_yaml: str) -> Dict:
    output = os.path.join(output_root, method)
    os.makedirs(output_root, exist_ok=True)
    config = os.path.join(output_root, f"{method}.yaml")
    write_config(config, method, pretrain_epochs, extra_yaml)
    started = time.monotonic()
    command = [sys.executable, "-m", "pipeline.cli", "run", "--data", data, "--output", output, "--config", config]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{method} run failed:\n{completed.stderr[-3000:]}")
    with open(os.path.join(output, SUMMARY_FILE), encoding="utf-8") as handle:
        summary = json.load(handle)
    timings = summary.get("timings") or {}
    pretrainer = timings.get("pretrainer") or {}
    return {
        "method": method,
        "candidate_accuracy": summary["candidate"]["accuracy"],
        "baseline_accuracy": summary["baseline"]["accuracy"],
        "blessed": summary["blessed"],
        "significance": summary.get("significance"),
        # Seconds the Trainers measured when they ran; a CACHED Pretrainer's are those of the run that trained it.
        "pretrainer_state": pretrainer.get("state"),
        "pretrain_seconds": pretrainer.get("pretrain_seconds"),
        "candidate_seconds": (timings.get("candidate") or {}).get("seconds"),
        "baseline_seconds": (timings.get("baseline") or {}).get("seconds"),
        "run_seconds": round(time.monotonic() - started, 1),
        "labeled_train_images": summary.get("labeled_train_images"),
        "eval_images": summary["data"]["splits"]["eval"]["written"],
    }


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="image folder in the selfsup layout")
    parser.add_argument("--output", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--extra-yaml", default="", help="more lines for the training: section (2-space indent)")
    args = parser.parse_args(argv)
    results = [run_method(args.data, args.output, method, args.pretrain_epochs, args.extra_yaml)
               for method in args.methods]
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "data": args.data,
        "pretrain_epochs": args.pretrain_epochs,
        "results": results,
    }
    with open(os.path.join(args.output, "label_efficiency.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    print(f"{'method':<9} {'candidate':>9} {'baseline':>9} {'gain':>7} {'pretrain s':>10} {'run s':>7}")
    for row in results:
        gain = row["candidate_accuracy"] - row["baseline_accuracy"]
        print(f"{row['method']:<9} {row['candidate_accuracy']:>9.4f} {row['baseline_accuracy']:>9.4f} "
              f"{gain:>+7.4f} {row['pretrain_seconds'] or float('nan'):>10.0f} {row['run_seconds']:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

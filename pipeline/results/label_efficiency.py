"""Several label budgets in one command: the picture a user wants before adopting SSL.

`selfsup run --label-budgets 5 10 25 ...` runs the whole pipeline once per budget
(`training.labels_per_class`) in one pipeline root and one MLMD (OUTPUT/tfx, OUTPUT/metadata.sqlite),
so that ingestion and the Pretrainer run once and every later budget reuses them from the cache;
each budget's summary, report and serving folder go to OUTPUT/labels-<budget>/. Then it writes
OUTPUT/label_efficiency.json and OUTPUT/label_efficiency.html: candidate and baseline accuracy (TFMA's,
from each run's summary) against the number of labels per class, with the pretraining seconds (once)
and each budget's fine-tuning seconds.
"""

import dataclasses
import html
import json
import os
from typing import Any, Dict, List, Sequence

from components.evaluation_report.svg_chart import Series, line_chart
from pipeline.config import Config
from pipeline.local_runner import check_before_running, output_paths, run_holding_lock
from pipeline.results.summary import relative_path, resolve_path
from pipeline.run_lock import output_lock
from trainer import contract, log
from trainer.hparams import ConfigError

LOG = log.get(__name__)

JSON_FILE, HTML_FILE = "label_efficiency.json", "label_efficiency.html"


def check_budgets(budgets: Sequence[int]) -> None:
    """Raises ConfigError unless there are two or more distinct positive budgets."""
    if len(set(budgets)) < 2 or any(budget <= 0 for budget in budgets):
        raise ConfigError(f"--label-budgets needs two or more distinct positive numbers, got {list(budgets)}")


def budget_config(config: Config, budget: int) -> Config:
    return dataclasses.replace(config, training=dataclasses.replace(config.training, labels_per_class=budget))


def _from_output(path, results_dir: str, output_dir: str):
    """A path of a budget's summary.json (relative to its folder, results_dir) relative to OUTPUT, where
    label_efficiency.json and .html are."""
    return relative_path(resolve_path(path, results_dir), output_dir, output_dir)


def run_budgets(config: Config, output_dir: str, budgets: Sequence[int]) -> Dict[str, Any]:
    """Runs the pipeline per budget in one output folder (holding its lock); writes and returns the comparison."""
    check_budgets(budgets)
    check_before_running(config, output_dir)
    rows, pretraining = [], []
    with output_lock(os.path.abspath(output_dir)):
        for budget in sorted(set(budgets)):
            LOG.info("label budget %d per class", budget)
            results_dir = os.path.join(output_dir, f"labels-{budget}")
            summary = run_holding_lock(budget_config(config, budget), output_paths(output_dir, results_dir))
            timings = summary.get("timings") or {}
            pretraining.append(timings.get("pretrainer") or {})
            rows.append({
                "labels_per_class": budget,
                "labeled_train_images": summary.get("labeled_train_images"),
                "candidate_accuracy": summary["candidate"]["accuracy"],
                "baseline_accuracy": summary["baseline"]["accuracy"],
                "blessed": summary["blessed"],
                "pushed_model": _from_output(summary["pushed_model"], results_dir, output_dir),
                "pretrainer": (summary.get("components") or {}).get(contract.PRETRAINER),
                "candidate_seconds": (timings.get("candidate") or {}).get("seconds"),
                "baseline_seconds": (timings.get("baseline") or {}).get("seconds"),
                "report": _from_output(summary.get("report"), results_dir, output_dir),
                "summary": _from_output(contract.SUMMARY_FILE, results_dir, output_dir),
            })
    pretrain_seconds = next((entry.get("seconds") for entry in pretraining if entry.get("seconds") is not None), None)
    comparison = {"method": config.training.method, "pretrain_seconds": pretrain_seconds,
                  "pretrainer_runs": sum(1 for row in rows if row["pretrainer"] == "COMPLETE"), "runs": rows}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, JSON_FILE), "w", encoding="utf-8") as handle:
        json.dump(comparison, handle, indent=2)
    with open(os.path.join(output_dir, HTML_FILE), "w", encoding="utf-8") as handle:
        handle.write(render(comparison))
    return comparison


def render(comparison: Dict[str, Any]) -> str:
    """One self-contained page: the chart (inline SVG) and a table linking each budget's report (its path
    relative to OUTPUT, where the page is)."""
    rows: List[Dict[str, Any]] = comparison["runs"]
    chart = line_chart(
        "Accuracy on the eval split against labels per class",
        [Series(f"candidate ({comparison['method']})", [row["candidate_accuracy"] for row in rows], "#1f77b4"),
         Series("supervised baseline", [row["baseline_accuracy"] for row in rows], "#d62728", dashed=True)],
        x_label="labels per class", y_label="accuracy",
        x_tick_labels=[str(row["labels_per_class"]) for row in rows],
    )
    table_rows = []
    for row in rows:
        link = f'<a href="{html.escape(row["report"])}">report</a>' if row["report"] else "no report"
        seconds = f"{row['candidate_seconds']:.0f} s" if row.get("candidate_seconds") is not None else "-"
        table_rows.append(
            f"<tr><td>{row['labels_per_class']}</td><td>{row['labeled_train_images']}</td><td>{seconds}</td>"
            f"<td>{row['candidate_accuracy']:.4f}</td><td>{row['baseline_accuracy']:.4f}</td>"
            f"<td>{row['candidate_accuracy'] - row['baseline_accuracy']:+.4f}</td>"
            f"<td>{'BLESSED' if row['blessed'] else 'NOT BLESSED'}</td><td>{link}</td></tr>"
        )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>selfsup label efficiency</title>'
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:right;"
        "border-bottom:1px solid #ddd}table{border-collapse:collapse}</style></head><body>"
        "<h1>Label efficiency</h1><p>Each budget is a pipeline run in one output folder; accuracies are "
        "TFMA's on the same eval split. The encoder was pretrained once"
        + (f" ({comparison['pretrain_seconds']:.0f} s)" if comparison.get("pretrain_seconds") is not None else "")
        + " and every budget fine-tuned it.</p>" + chart +
        "<table><tr><th>labels per class</th><th>labeled train images</th><th>candidate fine-tuning</th>"
        "<th>candidate</th><th>baseline</th>"
        "<th>difference</th><th>decision</th><th></th></tr>" + "".join(table_rows) + "</table></body></html>"
    )

"""Post-run code: what a finished run decided and produced, read back from its MLMD and artifacts.

- summary.py: summary.json, a projection of the report's result model plus the components' states.
- report.py: renders report.html again for an existing run (`selfsup report RUN_DIR`); report_command.py
  is that command's arguments and exit codes.
- run_results.py: one run's component states and outputs, read from MLMD by run id.
- label_efficiency.py: `selfsup run --label-budgets`: one run per budget and the page comparing them.

These modules sit above the pipeline factory and the local runner (label_efficiency drives runs) and below
the CLI.
"""

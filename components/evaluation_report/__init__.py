"""EvaluationReportGen: one self-contained HTML report of the decision, the metrics and the training curves.

Modules other packages may import (the rest is the component's own):
- report_data: the run's result model (collect_run_data, collect_report_data, ReportInputs, decision_text);
  pipeline/results builds summary.json and `selfsup report` from it.
- run_outputs: the MLMD properties of the Pusher's and ProductionModel's outputs, read once.
- html_report.render_html: the page for a result model.
- svg_chart: dependency-free SVG line charts (line_chart, Series, Band); the label-efficiency page
  (pipeline/results/label_efficiency.py) draws its chart with it, as the report does.
"""

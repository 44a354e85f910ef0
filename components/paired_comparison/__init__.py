"""PairedComparison: the uncertainty of the candidate-vs-baseline difference on the same eval images.

Modules other components may import (the ModelComparison artifact's format and its rule):
- comparison: read_comparison and significance_summary read comparison.json (BlessingGate, the report).
- statistics: significantly_better, the rule evaluation.require_significant adds (BlessingGate, the report).
"""

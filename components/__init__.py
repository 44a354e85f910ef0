"""Custom TFX components of selfsup (spec / component / executor, logic in plain functions)."""

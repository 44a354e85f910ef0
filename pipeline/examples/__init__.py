"""Examples of selfsup's parts in your own TFX pipeline (docs/own_pipeline.md)."""

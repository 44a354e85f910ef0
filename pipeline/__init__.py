"""The selfsup pipeline: config, factory, local runner and CLI."""

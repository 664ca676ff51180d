"""The language model: loading (models), the one decoding routine (generation), and log-prob
scoring of continuations (scoring). Knows nothing about presets, ECO or adapters."""

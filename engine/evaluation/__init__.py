"""Evaluation: the metric registry (metrics), variants x metrics over a preset split (runner), and
the run capsules that let a result be replayed and checked (capsules), and the forget-retain front
of an ELM or SKU adapter over its inference-time scale (scale_front)."""

"""Evaluation: the metric registry (metrics), variants x metrics over a preset split (runner), and
the run capsules that let a result be replayed and checked (capsules)."""

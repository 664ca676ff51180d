"""Lethe's Gradio UI. It talks to the engine only through `engine.Workbench`."""

"""Preset data: the typed, validated records (records), preset folders (presets), and rows read
from Hugging Face datasets (hf_sources). Knows nothing about models."""

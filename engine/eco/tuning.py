"""ECO calibration: search the corruption space for a default that forgets and stays fluent.

ECO's aim is an unlearned state: the model, given a flagged prompt, behaves like one that never
learned the topic. Two things are measured at each setting, on one split (train by default, so
the test split stays unseen):

- forget: accuracy on the split's forget cloze probes, with ECO's gate as shipped;
- fluency: greedy answers to the first `fluency_prompts` forget prompts of the split, scored by
  their unique-token ratio and by their perplexity under the base model, as a ratio to the
  Original's on the same prompts.

The forget target is the floor: the accuracy left when every prompt token of a flagged prompt is
drowned in noise (the answer prior no prompt corruption can remove), plus `margin`. The objective
is |forget - target| + penalty * fluency shortfall. Fluency is not monotone in the strength: mild
noise makes the model confabulate (high perplexity), strong noise makes it answer generically
(fluent again), so a local search started low stays in the wrong basin. Each candidate (selection
mode, corruption, dims) is therefore first scanned on a coarse log grid around its starting
strength, then refined by a zeroth-order search in log strength from the best grid point. Every evaluated point is kept: they
draw the front (forget accuracy against fluency). The chosen setting is the fluent point with
the lowest forget accuracy whose retain-probe accuracy stays within `retain_tolerance` of the
Original's; the search says so when no candidate qualifies.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

from ..evaluation.metrics import EvalContext, generate_batch, output_perplexity, unique_token_ratio
from .pipeline import ECO, ECOConfig, probe_summary
from .zo import ZOConfig, run, ScalarZO

SEED_CHECK = (1, 2, 3)  # other noise seeds the chosen setting is re-measured at
FLOOR_STRENGTH = 1e4  # in embedding std: the prompt is noise (the floor's setting)


@dataclass(frozen=True)
class Candidate:
    selection: str
    corruption: str
    dims: int
    init: float  # starting strength, in multiples of the embedding std

    @property
    def label(self) -> str:
        return f"{self.selection} / {self.corruption} / {'all' if not self.dims else self.dims} dims"


CANDIDATES = (
    Candidate("prompt", "rand_noise_first_n", 0, 1.0),
    Candidate("prompt", "set_rand_noise_first_n", 0, 1.0),
    Candidate("ner", "rand_noise_first_n", 1, 100.0),
)


@dataclass
class TuningConfig:
    target: float | None = field(default=None, metadata={"help": "Forget-accuracy target (empty = the floor + margin)."})
    margin: float = field(default=0.03, metadata={"help": "Target = floor + margin when no target is given."})
    # a margin over the 0.60 / 1.5 a fluent default must reach on a whole test split: a dozen
    # train prompts only estimate it
    min_unique_token_ratio: float = field(default=0.62, metadata={"help": "Fluency: least unique-token ratio of the answers."})
    max_perplexity_ratio: float = field(default=1.4, metadata={"help": "Fluency: most answer perplexity / Original's."})
    retain_tolerance: float = field(default=0.02, metadata={"help": "Retain-probe accuracy may drop this much at most."})
    fluency_prompts: int = field(default=12, metadata={"help": "Forget prompts answered per evaluation."})
    penalty: float = field(default=2.0, metadata={"help": "Weight of the fluency shortfall in the objective."})
    steps: int = field(default=4, metadata={"help": "ZO steps per candidate after the grid scan."})
    grid: tuple[float, ...] = field(default=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                                    metadata={"help": "Scan: multiples of each candidate's starting strength."})
    split: str = field(default="train", metadata={"help": "Split the search reads (never test by default)."})
    gate: str = field(default="classifier", metadata={"help": "classifier (as shipped) or always (corruption alone)."})

    def validate(self) -> "TuningConfig":
        if self.split not in ("train", "test"):
            raise ValueError(f"Unknown split {self.split!r}; known: train, test.")
        if self.gate not in ("classifier", "always"):
            raise ValueError(f"Unknown gate {self.gate!r}; known: classifier, always.")
        if not 1 <= int(self.fluency_prompts) <= 256:
            raise ValueError("fluency_prompts must be between 1 and 256.")
        if not 0 <= int(self.steps) <= 100:
            raise ValueError("steps must be between 0 and 100.")
        if not self.grid or any(not (math.isfinite(float(g)) and float(g) > 0) for g in self.grid):
            raise ValueError("grid needs at least one positive multiple.")
        for name in ("margin", "min_unique_token_ratio", "max_perplexity_ratio", "retain_tolerance", "penalty"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v}.")
        if self.target is not None and not 0 <= float(self.target) <= 1:
            raise ValueError("target must be between 0 and 1.")
        return self


class Tuner:
    """One calibration run over one model, gate and preset; `run()` yields its events."""

    def __init__(self, lm, classifier, preset, config: TuningConfig, base: ECOConfig | None = None):
        self.lm, self.clf, self.preset, self.c = lm, classifier, preset, config.validate()
        self.base = replace(base or ECOConfig(), strength_unit="std", gate=config.gate, threshold=None)
        self.engine = ECO(lm, classifier)
        self.probes = {s: preset.probes(s, config.split) for s in ("forget", "retain")}
        self.prompts = [r.prompt for r in preset.prompts("forget", config.split)][: int(config.fluency_prompts)]
        if not self.probes["forget"] or not self.prompts:
            raise ValueError(f"Preset {preset.name} has no forget probes or prompts in split {config.split!r}.")

    # ---------------------------------------------------------------- measurements
    def accuracy(self, side: str, eco: ECOConfig | None) -> float:
        return probe_summary(self.engine.probe_choice_logprobs(self.probes[side], eco))["accuracy"]

    def fluency(self, eco: ECOConfig | None) -> dict:
        ctx = EvalContext(self.lm, self.preset, self.c.split, eco, self.clf, batch_size=len(self.prompts))
        outs = generate_batch(ctx, self.prompts)
        utr = [u for u in (unique_token_ratio(self.lm.tokenizer, o) for o in outs) if u == u]
        ppl = [p for p in output_perplexity(self.lm, self.prompts, outs) if p == p]
        return {"unique_token_ratio": sum(utr) / len(utr) if utr else 0.0,
                "perplexity": math.exp(sum(map(math.log, ppl)) / len(ppl)) if ppl else float("inf"),
                "example": outs[0]}

    def shortfall(self, fl: dict) -> float:
        """How far an answer set is from fluent (0 = fluent), in relative units."""
        u = max(0.0, self.c.min_unique_token_ratio - fl["unique_token_ratio"]) / max(self.c.min_unique_token_ratio, 1e-9)
        p = max(0.0, fl["perplexity_ratio"] - self.c.max_perplexity_ratio) / max(self.c.max_perplexity_ratio, 1e-9)
        return u + p

    def measure(self, cand: Candidate, sigma: float, seed: int, target: float) -> dict:
        """One point: forget accuracy and fluency at one strength and noise seed."""
        cfg = self.config_for(cand, sigma, seed)
        fl = self.fluency(cfg)
        fl["perplexity_ratio"] = fl["perplexity"] / self.ppl0
        acc, short = self.accuracy("forget", cfg), self.shortfall(fl)
        return {"kind": "point", "candidate": cand.label, "strength": sigma, "seed": seed, "forget_accuracy": acc,
                "fluent": short == 0, "objective": abs(acc - target) + self.c.penalty * short,
                **{k: fl[k] for k in ("unique_token_ratio", "perplexity", "perplexity_ratio", "example")}}

    def config_for(self, cand: Candidate, strength: float, seed: int = 0) -> ECOConfig:
        return replace(self.base, selection=cand.selection, corruption=cand.corruption, dims=int(cand.dims),
                       strength=float(strength), seed=int(seed))

    # ---------------------------------------------------------------- the search
    def run(self, candidates=CANDIDATES, stop_event: threading.Event | None = None) -> Iterator[dict]:
        """Events: {"kind": "reference"}, then {"kind": "point"} per evaluation, {"kind":
        "candidate"} per candidate, and {"kind": "result"} last (unless stopped)."""
        c = self.c
        orig = {"forget_accuracy": self.accuracy("forget", None), "retain_accuracy": self.accuracy("retain", None),
                **self.fluency(None)}
        floor_cfg = self.config_for(Candidate("prompt", "rand_noise_first_n", 0, 0), FLOOR_STRENGTH)
        floor = self.accuracy("forget", floor_cfg)
        target = float(c.target) if c.target is not None else min(1.0, floor + c.margin)
        self.ppl0 = orig["perplexity"]
        yield {"kind": "reference", "original": orig, "floor": floor, "target": target,
               "n_forget": len(self.probes["forget"]), "n_retain": len(self.probes["retain"]),
               "n_prompts": len(self.prompts), "split": c.split}
        summaries = []
        for cand in candidates:
            points: list[dict] = []

            def objective(sigma: float, seed: int, cand=cand, points=points) -> float:
                points.append(self.measure(cand, sigma, seed, target))
                return points[-1]["objective"]

            for mult in c.grid:  # the scan (seed 0), then ZO from its best point
                if stop_event is not None and stop_event.is_set():
                    return
                objective(cand.init * float(mult), 0)
                yield points[-1]
            seen = len(points)
            if int(c.steps):
                start = min(points, key=lambda p: (p["objective"], p["strength"]))["strength"]
                # a local refinement between grid points (the scan did the global part), by the rule the
                # presets' recorded searches ran with, so `calibrate-eco` reproduces them
                zc = ZOConfig(init=start, min=cand.init * min(c.grid) / 10, steps=int(c.steps), tolerance=0.0,
                              rule="gradient", max_step=1.0)
                for _ in run(objective, ScalarZO(zc), stop_event=stop_event):
                    yield from points[seen:]
                    seen = len(points)
            if stop_event is not None and stop_event.is_set():
                return
            summary = self._summarise(cand, points, orig, target)
            summaries.append(summary)
            yield summary
        yield self._result(summaries, orig, floor, target)

    def _summarise(self, cand: Candidate, points: list[dict], orig: dict, target: float) -> dict:
        """The candidate's best fluent point, checked at the noise seed that ships (0): a point the
        search found at another seed is re-measured there (three at most), and the next best is tried
        (three fluent at seed 0 at most) when it is not fluent at seed 0 or costs retain accuracy."""
        out = {"kind": "candidate", "candidate": cand.label, "settings": asdict(cand), "points": len(points),
               "best": None, "retain_accuracy": None, "qualifies": False}
        fluent = sorted((p for p in points if p["fluent"]),
                        key=lambda p: (p["forget_accuracy"], p["seed"] != 0, p["objective"], p["strength"]))
        remeasured = tried = 0
        for p in fluent:
            if p["seed"] != 0:  # found at another seed: re-measured at 0, three at most
                if remeasured == 3:
                    continue
                remeasured += 1
            at0 = p if p["seed"] == 0 else self.measure(cand, p["strength"], 0, target)
            if not at0["fluent"]:
                continue
            tried += 1
            cfg = self.config_for(cand, p["strength"])
            retain = self.accuracy("retain", cfg)
            out.update(best=at0, forget_accuracy=at0["forget_accuracy"], retain_accuracy=retain, config=cfg.to_dict(),
                       qualifies=retain >= orig["retain_accuracy"] - self.c.retain_tolerance - 1e-9)
            if out["qualifies"] or tried == 3:
                break
        return out

    def _result(self, summaries: list[dict], orig: dict, floor: float, target: float) -> dict:
        ok = [s for s in summaries if s["qualifies"]]
        chosen = min(ok, key=lambda s: (s["forget_accuracy"], s["best"]["objective"])) if ok else None
        seeds = []
        if chosen is not None:  # how much the choice owes to its noise seed: the same strength at others
            cand = Candidate(**chosen["settings"])
            seeds = [{k: v for k, v in self.measure(cand, chosen["config"]["strength"], seed, target).items()
                      if k not in ("kind", "candidate", "example")} for seed in SEED_CHECK]
        return {"seed_check": seeds, "kind": "result", "chosen": chosen["config"] if chosen else None,
                "chosen_candidate": chosen["candidate"] if chosen else None,
                "forget_accuracy": chosen["forget_accuracy"] if chosen else None,
                "retain_accuracy": chosen["retain_accuracy"] if chosen else None,
                "original": {k: v for k, v in orig.items() if k != "example"}, "floor": floor, "target": target,
                "settings": asdict(self.c), "candidates": [{k: v for k, v in s.items() if k != "kind"} for s in summaries],
                "message": None if chosen else "No candidate was fluent at any strength it tried with retain "
                                               "accuracy kept: widen the candidates or relax the constraints."}


# ---------------------------------------------------------------------------- presets' defaults

MARKER = "# ECO's default, found by `python -m engine calibrate-eco` (the search: eco_calibration.json)"


def parse_candidates(specs) -> tuple[Candidate, ...]:
    """Candidates from "selection/corruption/dims[/init]" strings or dicts."""
    out = []
    for spec in specs:
        if isinstance(spec, Candidate):
            out.append(spec)
            continue
        if isinstance(spec, dict):
            spec = "/".join(str(spec[k]) for k in ("selection", "corruption", "dims", "init") if k in spec)
        parts = [x.strip() for x in str(spec).split("/")]
        if len(parts) not in (3, 4):
            raise ValueError(f"A candidate is selection/corruption/dims[/init], got {spec!r}.")
        try:
            dims, init = int(parts[2]), float(parts[3]) if len(parts) == 4 else 1.0
        except ValueError:
            raise ValueError(f"A candidate's dims is a whole number and its init a number, got {spec!r}.") from None
        cand = Candidate(parts[0], parts[1], dims, init)
        ECOConfig(selection=cand.selection, corruption=cand.corruption, dims=dims).validate(10**7)
        if dims < 0 or not init > 0:
            raise ValueError(f"A candidate needs dims >= 0 and init > 0, got {spec!r}.")
        out.append(cand)
    if not out:
        raise ValueError("Give at least one candidate.")
    return tuple(out)


def _without_blocks(text: str, keys: tuple[str, ...]) -> str:
    """preset.yaml's text without the top-level blocks `keys` (and the marker comment)."""
    out, skipping = [], False
    for line in text.splitlines():
        top = line[:1] not in ("", " ", "\t", "#")
        if top:
            skipping = line.split(":", 1)[0].strip() in keys
        if not skipping and line.strip() != MARKER:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def save_default(preset, result: dict, model_name: str) -> str:
    """Write the result's chosen setting into preset.yaml (`eco:` and a summary under
    `eco_calibration:`) and the whole search next to it; returns the preset.yaml path."""
    import json

    import yaml

    if result.get("kind") != "result" or not result.get("chosen"):
        raise ValueError("This calibration chose no setting; there is nothing to save.")
    chosen = {k: v for k, v in result["chosen"].items() if k not in ("threshold", "token_model")}
    chosen["entity_types"] = list(chosen.get("entity_types") or [])
    summary = {"model": model_name, "split": result["settings"]["split"], "target": round(result["target"], 4),
               "floor": round(result["floor"], 4), "candidate": result["chosen_candidate"],
               "forget_accuracy": round(result["forget_accuracy"], 4),
               "retain_accuracy": round(result["retain_accuracy"], 4),
               "original": {k: round(v, 4) for k, v in result["original"].items() if isinstance(v, float)},
               "fluent_at_other_seeds": f"{sum(x['fluent'] for x in result.get('seed_check', []))} of "
                                        f"{len(result.get('seed_check', []))} (seeds 1-3; the default runs seed 0)",
               "record": "eco_calibration.json"}
    path = preset.root / "preset.yaml"
    text = _without_blocks(path.read_text(encoding="utf-8"), ("eco", "eco_calibration"))
    block = yaml.safe_dump({"eco": chosen, "eco_calibration": summary}, sort_keys=False, width=100)
    path.write_text(text + MARKER + "\n" + block, encoding="utf-8")
    (preset.root / "eco_calibration.json").write_text(json.dumps({**result, "model": model_name}, indent=1) + "\n",
                                                      encoding="utf-8")
    return str(path)

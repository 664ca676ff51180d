"""Lethe's research claims, each checked against an independent truth (hand computations, a
second implementation, a spy on what was read), on the tiny model."""
from __future__ import annotations

import copy
import json
import math
import threading
import time

import pytest
import torch

from engine import GenerationConfig, Workbench
from engine.eco.pipeline import ECOConfig

ALWAYS = ECOConfig(gate="always", selection="prompt", strength=50.0, dims=8)


@pytest.fixture()
def wb(tiny_lm):
    wb = Workbench.from_loaded(tiny_lm, preset="harry_potter")
    yield wb
    for name in list(wb.variants.adapters):
        wb.variants.delete(name)


# ---------------------------------------------------------------------------- the gate's threshold

@pytest.mark.parametrize("alpha,k", [(0.2, 9), (0.1, 10), (0.5, 6), (0.35, 8)])
def test_conformal_threshold_is_the_exact_order_statistic(alpha, k):
    """tau = the ceil((n+1)(1-alpha))-th smallest score, with the +1 of split conformal."""
    from engine.eco.calibration import conformal_threshold

    scores = [0.93, 0.11, 0.52, 0.74, 0.35, 0.28, 0.66, 0.81, 0.47, 0.05]  # n = 10, shuffled
    assert math.ceil((len(scores) + 1) * (1 - alpha)) == k
    assert conformal_threshold(scores, alpha) == sorted(scores)[k - 1]


def test_conformal_threshold_caps_below_one_so_a_lexicon_hit_still_fires():
    from engine.eco.calibration import MAX_THRESHOLD, conformal_threshold

    assert conformal_threshold([0.2, 1.0, 0.4], 0.01) == MAX_THRESHOLD < 1.0
    assert conformal_threshold([], 0.1) == 0.5


def test_alpha_bounds_the_false_positive_rate_on_a_disjoint_fold():
    """Exchangeable scores: over many draws the mean FPR on fresh data stays at or below alpha."""
    from engine.eco.calibration import conformal_threshold

    g = torch.Generator().manual_seed(0)
    for alpha in (0.05, 0.2):
        fprs = []
        for _ in range(300):
            calib = torch.rand(39, generator=g).tolist()
            fresh = torch.rand(200, generator=g)
            tau = conformal_threshold(calib, alpha)
            fprs.append(float((fresh > tau).float().mean()))
        mean = sum(fprs) / len(fprs)
        assert mean <= alpha + 0.01, (alpha, mean)
        assert mean >= alpha - 0.06, (alpha, mean)  # not trivially conservative either


def test_calibration_uses_only_the_held_out_train_fold(monkeypatch):
    """tau is set on the retain train fold held out of training, never on test prompts."""
    from engine.eco import calibration as C
    from engine.eco.classifier import ClassifierConfig
    from engine.data.presets import load_preset

    preset = load_preset("harry_potter")
    config = ClassifierConfig(lexicon=False)
    data, calib = C.training_data(preset, config.calibration_fraction, config.entity_questions, config.augment)
    test_texts = {r.prompt for r in preset.prompts("forget", "test") + preset.prompts("retain", "test")}
    train_texts = {t for t, _ in data}
    assert calib and not set(calib) & test_texts and not set(calib) & train_texts
    seen = {}

    def spy(scores, alpha):
        seen["n"] = len(scores)
        return 0.5

    class Fake:
        lexicon, report, tokenizer, segments = [], {}, None, False
        model = type("M", (), {"get_input_embeddings": lambda self: torch.nn.Embedding(2, 2)})()
        threshold = 0.5
        gate_score = staticmethod(lambda text, s: s)
        matches = staticmethod(lambda text: [])

        def set_lexicon(self, entities, see_through=True):
            self.lexicon = list(entities)

    monkeypatch.setattr(C, "conformal_threshold", spy)
    monkeypatch.setattr(C, "_probs", lambda clf, texts, folder: [0.1] * len(texts))
    C.calibrate(Fake(), preset, config)
    assert seen["n"] == len(calib)


# ---------------------------------------------------------------------------- probe accuracy

def test_probe_accuracy_on_hand_built_score_tables():
    from engine.eco.pipeline import probe_summary

    table = [[-1.0, -2.0, -3.0, -4.0],   # answer first: right
             [-5.0, -1.0, -2.0, -3.0],   # answer last: wrong
             [-2.0, -2.5, -9.0, -0.5],   # a distractor best: wrong
             [-0.1, -7.0, -8.0, -9.0]]   # right
    out = probe_summary(table)
    assert out == {"accuracy": 0.5, "logprob": pytest.approx((-1 - 5 - 2 - 0.1) / 4), "n": 4}
    assert probe_summary([[-3.0, -1.0]])["accuracy"] == 0.0
    assert probe_summary([[-1.0, -3.0]])["accuracy"] == 1.0
    empty = probe_summary([])
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])


# ---------------------------------------------------------------------------- ECO

def test_eco_noise_differs_across_seeds_and_repeats_with_one(wb):
    g = GenerationConfig(max_new_tokens=12)
    runs = {seed: wb.generate("Who is Hermione Granger?", g, variant="eco",
                              eco=ECOConfig.from_dict({**ALWAYS.to_dict(), "seed": seed}))["text"]
            for seed in (0, 1, 2)}
    assert runs[0] == wb.generate("Who is Hermione Granger?", g, variant="eco", eco=ALWAYS)["text"]
    assert len(set(runs.values())) == 3, runs


def test_eco_plan_embeddings_differ_across_seeds_only_at_selected_positions(wb):
    plans = [wb.eco_plan("Who is Harry Potter?", ECOConfig.from_dict({**ALWAYS.to_dict(), "seed": s}))
             for s in (3, 4)]
    sel = plans[0].selection.positions
    a, b = plans[0].inputs_embeds[0], plans[1].inputs_embeds[0]
    others = [i for i in range(a.shape[0]) if i not in sel]
    assert not torch.equal(a[sel], b[sel]) and torch.equal(a[others], b[others])


def test_embedding_std_is_the_standard_deviation_of_the_table(tiny_lm):
    from engine.eco.pipeline import embedding_std

    w = tiny_lm.model.get_input_embeddings().weight.detach().double()
    by_hand = math.sqrt(((w - w.mean()) ** 2).sum().item() / (w.numel() - 1))
    assert embedding_std(tiny_lm) == pytest.approx(by_hand, rel=1e-5)
    assert embedding_std(tiny_lm) != pytest.approx(w.abs().mean().item(), rel=1e-3)


def test_zo_reads_only_the_train_probes(wb, monkeypatch):
    from engine.eco.zo import ZOConfig

    splits = []
    real = wb.probe_accuracy

    def spy(side, split="test", eco=None, preset=None):
        splits.append(split)
        return real(side, split, eco, preset)

    monkeypatch.setattr(wb, "probe_accuracy", spy)
    records = list(wb.optimize(ALWAYS, ZOConfig(steps=2, tolerance=0.0)))
    assert records and splits and set(splits) == {"train"}


# ---------------------------------------------------------------------------- SKU's lambda

def merged_copy(lm, adapter: str, scale: float):
    """The base model with W + scale * (alpha / r) * B @ A folded into every LoRA layer, by hand."""
    base = copy.deepcopy(lm.model)
    params = dict(base.named_parameters())
    cfg = lm.model.peft_config[adapter]
    factor = scale * cfg.lora_alpha / cfg.r
    with torch.no_grad():
        for name, p in list(params.items()):
            if f"lora_A.{adapter}.weight" in name:
                stem = name.replace(f"lora_A.{adapter}.weight", "")
                delta = params[f"{stem}lora_B.{adapter}.weight"] @ p
                params[f"{stem}base_layer.weight"].add_(factor * delta)
    for name, p in params.items():
        if "lora_" in name:
            p.data.zero_()
    return base


def test_compare_with_lambda_equals_the_base_minus_lambda_times_the_task_vector(wb):
    wb.train("sku", {"steps": 2, "max_length": 24, "lr": 5e-2})
    name = wb.variants.current["harry_potter"]["sku"]
    prompt, config = "Who is Harry Potter?", GenerationConfig(max_new_tokens=10)
    for lam in (1.0, 3.0):
        last = None
        for last in wb.compare(prompt, ("original", "sku"), config, negation=lam):
            pass
        shown = dict(zip(last["variants"], last["texts"]))
        from engine.lm.generation import encode_prompt, generate

        merged = merged_copy(wb.lm, name, -lam)  # every LoRA tensor zeroed: only the folded weights act
        ids = encode_prompt(wb.lm.tokenizer, prompt, chat=True, device="cpu")
        want = generate(merged, wb.lm.tokenizer, config, **ids).text
        assert shown["sku"] == want, (lam, shown["sku"], want)
    assert shown["original"] != shown["sku"]


# ---------------------------------------------------------------------------- capsules

def test_replay_in_a_fresh_process_notices_an_edited_capsule(tiny_model_dir, tmp_path):
    from tests.test_cli import cli

    cap_path = tmp_path / "run.json"
    res = cli("evaluate", "--model", str(tiny_model_dir), "--preset", "star_wars", "--variants", "original,eco",
              "--metrics", "forget_probe_accuracy,forget_probe_logprob", "--gate", "always", "--strength", "5",
              "--dims", "4", "--capsule", str(cap_path), "--json")
    assert res.returncode == 0, res.stderr[-400:]
    same = json.loads(cli("replay", str(cap_path), "--model", str(tiny_model_dir), "--json").stdout)
    assert same["same"] and not same["warnings"]
    cap = json.loads(cap_path.read_text())
    cap["settings"]["eco"]["strength"] = 5000.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(cap))
    out = json.loads(cli("replay", str(edited), "--model", str(tiny_model_dir), "--json").stdout)
    assert not out["same"] and any(not r["same"] for r in out["rows"] if r["variant"] == "eco")
    cap = json.loads(cap_path.read_text())
    cap["model"]["weights_sha256"] = "0" * 64
    edited.write_text(json.dumps(cap))
    out = json.loads(cli("replay", str(edited), "--model", str(tiny_model_dir), "--json").stdout)
    assert not out["same"] and any("weights differ" in w for w in out["warnings"])


# ---------------------------------------------------------------------------- the app's decoding path

def interleaved(lm, config, prompt="Who is Harry Potter?"):
    import contextlib

    from engine.lm.generation import decode, encode_prompt

    ids = encode_prompt(lm.tokenizer, prompt, chat=True, device="cpu")
    texts = None
    for texts in decode(lm.model, lm.tokenizer, config, [ids], [contextlib.nullcontext]):
        pass
    return texts[0]


def test_top_p_keeps_the_most_likely_token_on_the_app_path(tiny_lm):
    greedy = interleaved(tiny_lm, GenerationConfig(max_new_tokens=12))
    tiny_p = interleaved(tiny_lm, GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=1e-6, seed=3))
    assert tiny_p == greedy  # the nucleus is the top token alone
    hot = {interleaved(tiny_lm, GenerationConfig(max_new_tokens=12, temperature=1.5, seed=s)) for s in range(3)}
    assert len(hot) > 1


def test_stop_strings_cut_the_answer_on_the_app_path(tiny_lm):
    full = interleaved(tiny_lm, GenerationConfig(max_new_tokens=24))
    k = next(i for i in range(1, len(full) - 2) if full[i:i + 2].strip() and full.find(full[i:i + 2]) == i)
    cut = interleaved(tiny_lm, GenerationConfig(max_new_tokens=24, stop=(full[k:k + 2],)))
    assert cut == full[:k]


def test_generation_runs_while_an_adapter_trains(wb):
    prompt, config = "Who is Merlin?", GenerationConfig(max_new_tokens=8)
    before = wb.generate(prompt, config)["text"]
    steps, done = [], threading.Event()

    def train():
        try:
            wb.train("elm", {"steps": 30, "max_length": 24, "consistency_scale": 0}, on_step=steps.append)
        finally:
            done.set()

    worker = threading.Thread(target=train)
    worker.start()
    while not steps:
        time.sleep(0.01)
    during = wb.generate(prompt, config)["text"]
    finished_first = done.is_set()
    worker.join()
    assert during == before, "Original changed while an adapter trained"
    assert not finished_first, "generation waited for the whole training"


# ---------------------------------------------------------------------------- the default model's cache

def test_an_edited_cache_file_is_detected(tmp_path, tiny_lm):
    from engine.lm.models import _write_cache, cache_is_valid

    path = tmp_path / "cache" / "model"
    _write_cache(tiny_lm.model, tiny_lm.tokenizer, path, "test")
    assert cache_is_valid(path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped in the middle
    weights.write_bytes(bytes(data))
    assert not cache_is_valid(path)
    weights.write_bytes(bytes(data[:-10]))
    assert not cache_is_valid(path)


# ---------------------------------------------------------------------------- serving defaults

def test_the_default_bind_is_loopback_and_spaces_mode_caps_work():
    import launch

    args = launch.parse_args([])
    assert args.host == "127.0.0.1" and not args.share and not args.insecure and not args.trust_remote_code
    caps = launch.SPACE_SETTINGS
    assert caps["max_new_tokens_cap"] == 256 and caps["max_train_steps"] == 100 and not caps["allow_save"]


def test_spaces_caps_are_enforced_by_the_app(tiny_model_dir, tmp_path):
    from gradio_client import Client

    import launch
    from tests.conftest import live_app

    with live_app(tiny_model_dir, tmp_path / "cache", launch.SPACE_SETTINGS) as (url, _):
        c = Client(url, verbose=False)
        with pytest.raises(Exception, match="at most 256 new tokens"):
            c.predict(prompt="Hi", max_new_tokens=300, gate="always", api_name="/generate")
        with pytest.raises(Exception, match="at most 100 steps"):
            c.predict(method="sku", settings_json='{"steps": 500}', api_name="/train")
        with pytest.raises(Exception, match="limit is 2,000"):
            c.predict(prompt="x" * 2001, api_name="/classify")
        with pytest.raises(Exception, match="Unknown model"):
            c.predict(str(tiny_model_dir), "cpu", "float32", api_name="/load_model")

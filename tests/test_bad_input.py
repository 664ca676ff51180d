"""Bad input, the long list: every number, name and text a client or a CLI user can send is
checked where it enters, before any model work, and refused with one sentence; the next request
works. (tests/test_reliability.py and tests/test_security.py hold the rest of the cases.)"""
from __future__ import annotations

import json
import math
import re
import time

import pytest

from tests.test_cli import cli

NAN, INF = math.nan, math.inf
GEN = dict(max_new_tokens=4, dims=4, strength=5.0, selection="prompt", gate="always")
ECO = ["rand_noise_first_n", 4, 5.0, "absolute", "prompt", "", "always", 0.0, 0]  # the Playground's ECO values
ZO = ["adaptive", 1.0]  # the Optimize tab's rule and first move


def capsule(**changes) -> dict:
    cap = {"format": 1, "kind": "lethe-evaluation", "model": {"weights_sha256": "0"},
           "preset": {"name": "harry_potter", "data_sha256": "0"},
           "settings": {"variants": ["original"], "metrics": ["forget_probe_accuracy"], "split": "test", "eco": {}},
           "rows": []}
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = cap
        for p in parents:
            target = target[p]
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return cap


# (case, endpoint, keyword arguments or a list of positional ones, the sentence the user sees)
CASES = [
    ("NaN strength", "/generate", {"strength": NAN}, "strength must be a finite number"),
    ("infinite strength", "/generate", {"strength": INF}, "strength must be a finite number"),
    ("minus infinite strength", "/generate", {"strength": -INF}, "strength must be a finite number"),
    ("NaN threshold", "/generate", {"threshold": NAN}, "threshold must be a finite number"),
    ("threshold above 1", "/generate", {"threshold": 1.5}, "threshold must be between 0 and 1"),
    ("negative threshold", "/generate", {"threshold": -0.5}, "threshold must be between 0 and 1"),
    ("seed 2^63", "/generate", {"seed": 2**63}, "seed must be between 0 and"),
    ("negative seed", "/generate", {"seed": -1}, "seed must be between 0 and"),
    ("ECO seed 2^64", "/generate", {"eco_seed": 2**64}, "ECO seed must be between 0 and"),
    ("negative ECO seed", "/generate", {"eco_seed": -5}, "ECO seed must be between 0 and"),
    ("zero new tokens", "/generate", {"max_new_tokens": 0}, "max_new_tokens must be between 1 and 4,096"),
    ("a million new tokens", "/generate", {"max_new_tokens": 10**6}, "max_new_tokens must be between 1 and 4,096"),
    ("NaN new tokens", "/generate", {"max_new_tokens": NAN}, "max_new_tokens must be a whole number"),
    ("fractional new tokens", "/generate", {"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ("NaN temperature", "/generate", {"temperature": NAN}, "temperature must be a finite number"),
    ("negative temperature", "/generate", {"temperature": -1.0}, "temperature must be between 0 and 5"),
    ("temperature 99", "/generate", {"temperature": 99.0}, "temperature must be between 0 and 5"),
    ("top_p 0", "/generate", {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ("top_p 2", "/generate", {"top_p": 2.0}, "top_p must be between 0 and 1"),
    ("NaN top_p", "/generate", {"top_p": NAN}, "top_p must be a finite number"),
    ("negative dims", "/generate", {"dims": -1}, "dims must be between 0 and"),
    ("fractional dims", "/generate", {"dims": 2.5}, "dims must be a whole number"),
    ("NaN dims", "/generate", {"dims": NAN}, "dims must be a whole number"),
    ("unknown strength unit", "/generate", {"strength_unit": "furlongs"}, "known: absolute, std"),
    ("unknown selection", "/generate", {"selection": "everything"}, "known: .*ner"),
    ("lone high surrogate", "/generate", {"prompt": "Who is \ud800 here?"}, "unpaired surrogate"),
    ("lone low surrogate", "/generate", {"prompt": "\udc00abc"}, "unpaired surrogate"),
    ("8,001-character prompt", "/generate", {"prompt": "y" * 8001}, "limit is 8,000"),
    ("NaN lambda", "/compare", {"negation": NAN}, "lambda must be a finite number"),
    ("infinite lambda", "/compare", {"negation": INF}, "lambda must be a finite number"),
    ("lambda 101", "/compare", {"negation": 101.0}, "lambda must be between 0 and 100"),
    ("empty prompt in Compare", "/compare", {"prompt": ""}, "prompt is empty"),
    ("zero new tokens in Compare", "/compare", {"max_new_tokens": 0}, "max_new_tokens must be between"),
    ("NUL in Compare", "/compare", {"prompt": "a\x00b"}, "NUL character"),
    ("NaN threshold in /classify", "/classify", {"threshold": NAN}, "threshold must be a finite number"),
    ("infinite threshold in /classify", "/classify", {"threshold": INF}, "threshold must be a finite number"),
    ("threshold 2 in /classify", "/classify", {"threshold": 2.0}, "threshold must be between 0 and 1"),
    ("empty prompt in /classify", "/classify", {"prompt": " "}, "prompt is empty"),
    ("NUL in /classify", "/classify", {"prompt": "a\x00"}, "NUL character"),
    ("lone surrogate in /classify", "/classify", {"prompt": "\ud83d"}, "unpaired surrogate"),
    ("20,000 characters in /classify", "/classify", {"prompt": "z" * 20_000}, "limit is 8,000"),
    ("empty prompt in /select_tokens", "/select_tokens", {"prompt": ""}, "prompt is empty"),
    ("unknown selection in /select_tokens", "/select_tokens", {"selection": "all"}, "known:"),
    ("NUL in /select_tokens", "/select_tokens", {"prompt": "\x00"}, "NUL character"),
    ("NaN strength in a sweep", "/sweep", ["1,nan", "0", "train", *ECO], "strengths must be a finite number"),
    ("infinite strength in a sweep", "/sweep", ["inf", "0", "train", *ECO], "strengths must be a finite number"),
    ("negative strength in a sweep", "/sweep", ["-1", "0", "train", *ECO], "strengths must be between 0"),
    ("no strengths", "/sweep", ["", "0", "train", *ECO], "numbers separated by commas|at least one"),
    ("words as strengths", "/sweep", ["a,b", "0", "train", *ECO], "numbers separated by commas"),
    ("65 strengths", "/sweep", [",".join(["1"] * 65), "0", "train", *ECO], "limit is 64"),
    ("dims above the hidden size in a sweep", "/sweep", ["1", "100000", "train", *ECO], "dims must be between"),
    ("NaN ECO strength in a sweep", "/sweep", ["1", "0", "train", *ECO[:2], NAN, *ECO[3:]],
     "strength must be a finite number"),
    ("NaN ZO target", "/optimize", [1.0, 10.0, 0.5, 0.1, 3, NAN, "forget_probe_accuracy", *ZO, *ECO],
     "target must be a finite number"),
    ("zero ZO steps", "/optimize", [1.0, 10.0, 0.5, 0.1, 0, 0.25, "forget_probe_accuracy", *ZO, *ECO], "steps"),
    ("NaN ZO learning rate", "/optimize", [1.0, NAN, 0.5, 0.1, 3, 0.25, "forget_probe_accuracy", *ZO, *ECO],
     "lr|finite|number"),
    ("unknown ZO rule", "/optimize", [1.0, 10.0, 0.5, 0.1, 3, 0.25, "forget_probe_accuracy", "newton", 1.0, *ECO],
     "Unknown ZO rule|not in the list of choices"),
    ("zero ZO first move", "/optimize", [1.0, 10.0, 0.5, 0.1, 3, 0.25, "forget_probe_accuracy", "adaptive", 0.0, *ECO],
     "eps, step and max_step must be positive"),
    ("unknown ZO metric", "/optimize", [1.0, 10.0, 0.5, 0.1, 3, 0.25, "perplexity", *ZO, *ECO],
     "Unknown ZO metric|not in the list of choices"),
    ("NaN ECO seed in ZO", "/optimize", [1.0, 10.0, 0.5, 0.1, 3, 0.25, "forget_probe_accuracy", *ZO, *ECO[:8], NAN],
     "ECO seed must be a whole number"),
    ("NaN learning rate in training", "/train", {"method": "elm", "settings_json": '{"lr": NaN}'},
     "lr must be between"),
    ("training settings as a list", "/train", {"method": "sku", "settings_json": "[1, 2]"}, "must be a JSON object"),
    ("training settings null", "/train", {"method": "sku", "settings_json": "null"}, "must be a JSON object"),
    ("a billion training steps", "/train", {"method": "sku", "settings_json": '{"steps": 1000000000}'},
     "steps must be between"),
    ("LoRA rank 0", "/train", {"method": "sku", "settings_json": '{"rank": 0}'}, "rank must be between"),
    ("empty training method", "/train", {"method": ""}, "known: elm, sku"),
    ("unknown device", "/load_model", ["default", "tpu", "float32"], "Unknown device 'tpu'; choose one of"),
    ("unknown dtype", "/load_model", ["default", "cpu", "float8"], "Unknown dtype 'float8'; choose one of"),
    ("a relative path as a model", "/load_model", ["../../etc", "cpu", "float32"], "Unknown model"),
    ("a Hub id nobody allowed", "/load_model", ["evil/model", "cpu", "float32"], "Unknown model"),
    ("an absolute path as a preset", "/load_preset", ["/etc"], "Unknown preset"),
    ("an empty preset name", "/load_preset", [""], "Unknown preset"),
    ("a preset path with dots", "/load_preset", ["harry_potter/../star_wars"], "Unknown preset"),
    ("capsule of another kind", "/replay_run", capsule(kind="something-else"), "not a Lethe run capsule"),
    ("capsule that is a JSON list", "/replay_run", [1, 2, 3], "not a Lethe run capsule"),
    ("capsule missing its variants", "/replay_run", capsule(settings__variants=...), "settings.variants"),
    ("capsule whose ECO settings are text", "/replay_run", capsule(settings__eco="strong"), "settings.eco"),
    ("capsule whose rows are not a list", "/replay_run", capsule(rows={"a": 1}), "rows"),
    ("capsule missing its model section", "/replay_run", capsule(model=...), "model"),
    ("capsule with an unknown variant", "/replay_run", capsule(settings__variants=["rmu"]), "known: original"),
    ("capsule with an unknown metric", "/replay_run", capsule(settings__metrics=["vibes"]), "known: "),
    ("capsule naming a token model path", "/replay_run", capsule(settings__eco={"token_model": "/etc"}),
     "may not name a token-classification model"),
    ("capsule with a batch of a billion", "/replay_run", capsule(settings__batch_size=10**9),
     "batch_size must be between 1 and 512"),
    ("evaluation of a preset path", "/evaluate", ["/etc", "test", ["original"], ["forget_probe_accuracy"], *ECO],
     "Unknown preset|not in the list of choices"),
    ("evaluation of no variant", "/evaluate", ["harry_potter", "test", [], ["forget_probe_accuracy"], *ECO],
     "at least one variant"),
]


def non_finite(value) -> bool:
    """Values gradio_client cannot send: NaN / infinite numbers and lone surrogates."""
    values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return any((isinstance(v, float) and not math.isfinite(v))
               or (isinstance(v, str) and re.search("[\ud800-\udfff]", v)) for v in values)


def raw_call(client, endpoint: str, args) -> None:
    """POST the request as raw JSON, NaN and Infinity literals included (gradio_client cannot send
    them), and raise the server's error message like gradio_client does."""
    import urllib.request

    if isinstance(args, dict):
        params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][endpoint]["parameters"]
        args = [args.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    url = f"{client.lethe_url}gradio_api/call{endpoint}"
    body = json.dumps({"data": args}).encode()  # allow_nan: NaN / Infinity as bare literals
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}/{event_id}", timeout=60).read().decode()
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
    kind, data = events[-1]
    if kind == "error":
        raise RuntimeError(json.loads(data) if data.startswith('"') else data)


@pytest.mark.parametrize("case,endpoint,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_sentence(client, tmp_path, case, endpoint, args, message):
    start = time.perf_counter()
    with pytest.raises(Exception) as err:
        if endpoint == "/replay_run":
            from gradio_client import handle_file

            path = tmp_path / "capsule.json"
            path.write_text(json.dumps(args))
            client.predict(handle_file(str(path)), api_name=endpoint)
        elif isinstance(args, list):
            (raw_call(client, endpoint, args) if non_finite(args) else client.predict(*args, api_name=endpoint))
        else:
            base = {**GEN, "prompt": "Who is Merlin?"} if endpoint in ("/generate", "/compare") else {}
            if endpoint in ("/classify", "/select_tokens"):
                base = {"prompt": "Who is Merlin?"}
            if non_finite(args):
                raw_call(client, endpoint, {**base, **args})
            else:
                client.predict(api_name=endpoint, **{**base, **args})
    text = str(err.value).strip()
    assert re.search(message, text), text
    assert "\n" not in text and "Traceback" not in text
    assert time.perf_counter() - start < 20, "refused only after model work"
    out = client.predict(prompt="Who is Merlin?", api_name="/generate", **GEN)
    assert isinstance(out["eco"], str)


def test_a_nan_strength_in_a_sweep_is_refused_before_any_probe_is_scored(client):
    start = time.perf_counter()
    with pytest.raises(Exception, match="finite number"):
        client.predict("1,10,nan", "0", "test", *ECO, api_name="/sweep")
    with pytest.raises(Exception, match="finite number"):
        raw_call(client, "/sweep", ["1,10", "0", "test", *ECO[:2], NAN, *ECO[3:]])
    assert time.perf_counter() - start < 3


BAD_CLI = [
    ("NaN threshold", ["classify", "--prompt", "Hi", "--threshold", "nan"], "threshold must be a finite number"),
    ("seed 2^63", ["generate", "--prompt", "Hi", "--seed", str(2**63)], "seed must be between 0 and"),
    ("NaN temperature", ["generate", "--prompt", "Hi", "--temperature", "nan"], "temperature must be a finite"),
    ("NaN strength in a sweep", ["sweep", "--strengths", "1,nan"], "strengths must be a finite number"),
    ("lone surrogate", ["generate", "--prompt", "a\udc80b"], "unpaired surrogate|surrogate"),
    ("ECO seed 2^64", ["generate", "--prompt", "Hi", "--variant", "eco", "--gate", "always", "--eco-seed",
                       str(2**64)], "ECO seed must be between"),
]


@pytest.mark.parametrize("case,argv,message", BAD_CLI, ids=[c[0] for c in BAD_CLI])
def test_bad_input_through_the_cli_is_one_line(tiny_model_dir, case, argv, message):
    if argv[0] in ("generate", "sweep"):
        argv = [*argv, "--model", str(tiny_model_dir)]
    res = cli(*argv)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and re.search(message, lines[0]), res.stderr[-400:]


def test_cli_json_is_strict_json_even_with_nan_values():
    from engine.__main__ import json_text

    text = json_text({"value": NAN, "rows": [{"x": INF}, {"y": -INF}], "ok": 1.5})
    assert json.loads(text) == {"value": None, "rows": [{"x": None}, {"y": None}], "ok": 1.5}


def test_a_user_error_is_one_log_line_and_a_bug_keeps_its_traceback(caplog):
    import gradio as gr

    from app.errors import ui_errors

    @ui_errors
    def refuses():
        raise ValueError("The prompt is empty: type a question.")

    @ui_errors
    def breaks():
        return {}["missing"] + 1 if False else 1 / 0

    with caplog.at_level("WARNING", logger="lethe.app"), pytest.raises(gr.Error) as err:
        refuses()
    assert err.value.print_exception is False
    assert [r.exc_info for r in caplog.records] == [None] and len(caplog.records) == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="lethe.app"), pytest.raises(gr.Error) as err:
        breaks()
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
    assert err.value.print_exception is False  # logged once, with its traceback, by Lethe


def test_a_public_bind_without_login_refuses_to_start_unless_insecure():
    from launch import exposure_problem

    assert exposure_problem("127.0.0.1", False, None, False, False) is None
    assert exposure_problem("::1", False, None, False, False) is None
    assert "--auth USER:PASS" in exposure_problem("0.0.0.0", False, None, False, False)
    assert "share link" in exposure_problem("127.0.0.1", True, None, False, False)
    assert exposure_problem("0.0.0.0", False, [("a", "b")], False, False) is None
    assert exposure_problem("0.0.0.0", False, None, False, True) is None
    assert exposure_problem("0.0.0.0", False, None, True, False) is None  # Spaces sit behind their own front


def test_launch_exits_before_loading_anything_on_a_public_bind(capsys):
    import launch

    assert launch.main(["--host", "0.0.0.0", "--skip-version-check", "--model", "never-loaded"]) == 2
    assert "--insecure" in capsys.readouterr().err

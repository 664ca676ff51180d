"""Security and cancel, tried as a hostile client would through gradio_client against a running
Lethe server (the tiny model, in process): no client runs code or reads files on the server,
paths from a client are refused without saying whether they exist, and Stop is a contract."""
from __future__ import annotations

import json
import threading
import time

import pytest


SECRET = "TOPSECRET-lethe-7f3a9"


def evil_model_folder(root, marker):
    """A model folder whose config asks transformers to import code that writes `marker`."""
    folder = root / "evil-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}))
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import PretrainedConfig\n" \
           "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


# ---------------------------------------------------------------------------- 1. remote code

def test_load_model_takes_no_remote_code_switch_from_a_client(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/load_model"]
    assert [p["parameter_name"] for p in api["parameters"]] == ["name", "device", "dtype"]


def test_a_client_cannot_load_a_model_folder_that_runs_code(client, tmp_path):
    marker = tmp_path / "marker"
    folder = evil_model_folder(tmp_path, marker)
    with pytest.raises(Exception, match="Unknown model") as err:
        client.predict(str(folder), "cpu", "float32", api_name="/load_model")
    assert str(folder) not in str(err.value).split("choose one of")[-1]
    assert not marker.exists()


def test_even_an_operator_allowed_folder_runs_no_code_unless_the_operator_said_so(tiny_model_dir, tmp_path):
    from engine import Workbench

    marker = tmp_path / "marker"
    folder = evil_model_folder(tmp_path, marker)
    wb = Workbench(model=None, preset=None)
    with pytest.raises(Exception, match="trust-remote-code|not a transformers model"):
        wb.load_model(str(folder))
    assert not marker.exists()


def test_unknown_models_get_the_same_sentence_whether_or_not_the_path_exists(client, tmp_path):
    messages = []
    for name in (str(tmp_path), str(tmp_path / "nowhere"), "/etc", "/no/such/dir", "some-org/some-model"):
        with pytest.raises(Exception) as err:
            client.predict(name, "cpu", "float32", api_name="/load_model")
        messages.append(str(err.value).replace(repr(name)[:80], "NAME"))
    assert len(set(messages)) == 1, messages


def test_allowed_models_are_the_embedded_one_the_started_one_and_the_cached_ones(app_server, tiny_model_dir):
    from app.main import model_allowlist

    allowed = model_allowlist({"model": str(tiny_model_dir)})
    assert allowed[0] == "default" and str(tiny_model_dir) in allowed
    assert model_allowlist({"model": "default", "model_allowlist": ["default", "x/y"]}) == ["default", "x/y"]


# ---------------------------------------------------------------------------- 2. server files

def capsule(settings: dict) -> dict:
    return {"format": 1, "kind": "lethe-evaluation", "model": {"weights_sha256": "0"},
            "preset": {"name": "harry_potter", "data_sha256": "0"},
            "settings": {"variants": ["original"], "metrics": ["forget_probe_accuracy"], "split": "test",
                         "eco": {}, **settings}, "rows": []}


def replay(client, tmp_path, cap: dict, name="capsule.json"):
    from gradio_client import handle_file

    path = tmp_path / name
    path.write_text(json.dumps(cap))
    return client.predict(handle_file(str(path)), api_name="/replay_run")


def test_a_capsule_naming_an_uploaded_preset_folder_reads_nothing(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(f"root:x:0:0:{SECRET}\n")
    evil = tmp_path / "evil_preset"
    (evil / "data").mkdir(parents=True)
    (evil / "preset.yaml").write_text(
        "name: evil\ntitle: t\ndescription: d\nforget_keywords: [x]\n"
        "concept: {name: a, description: b, counterpart: c, expert_prefix: d, novice_prefix: e}\n"
        f"files:\n  forget_prompts: {{dataset: text, data_files: {str(secret)!r}, columns: {{prompt: text}}}}\n")
    messages = []
    for preset in (str(evil), str(tmp_path / "no_such_preset"), "../../../../etc"):
        with pytest.raises(Exception, match="Unknown preset") as err:
            replay(client, tmp_path, capsule({"preset": preset}))
        assert SECRET not in str(err.value)
        messages.append(str(err.value).replace(repr(preset)[:80], "NAME"))
    assert len(set(messages)) == 1, messages


def test_a_capsule_probes_file_outside_the_preset_is_refused_alike(client, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"id": SECRET, "prefix": SECRET, "answer": " a", "distractors": [" b", " c", " d"]}))
    messages = []
    for probes in (str(secret), "../../../../etc/shadow", str(tmp_path / "nothing.jsonl"), "/etc/passwd"):
        with pytest.raises(Exception, match="Unknown probe file") as err:
            replay(client, tmp_path, capsule({"preset": "harry_potter", "probes_file": probes}))
        assert SECRET not in str(err.value) and "root:" not in str(err.value)
        messages.append(str(err.value).replace(repr(probes)[:80], "NAME"))
    assert len(set(messages)) == 1, messages


def test_a_capsule_with_missing_sections_is_one_sentence_naming_them(client, tmp_path):
    cap = capsule({})
    del cap["settings"]["metrics"]
    with pytest.raises(Exception, match="settings.metrics"):
        replay(client, tmp_path, cap)


def test_presets_are_loaded_by_name_only(client, tmp_path):
    for name in (str(tmp_path), "/etc", "presets/harry_potter", "../presets/star_wars"):
        with pytest.raises(Exception, match="Unknown preset"):
            client.predict(name, api_name="/load_preset")
    assert client.predict("star_wars", api_name="/load_preset")["name"] == "star_wars"
    assert client.predict("harry_potter", api_name="/load_preset")["name"] == "harry_potter"


def test_uploads_over_the_size_cap_are_refused(client, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "big.json"
    big.write_text('{"pad": "' + "x" * 12_000_000 + '"}')
    with pytest.raises(Exception):
        client.predict(handle_file(str(big)), api_name="/replay_run")


# ---------------------------------------------------------------------------- 3. Stop is a contract

def job_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def wait_for_outputs(job, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while len(job.outputs()) < n:
        assert time.time() < deadline, f"the job gave {len(job.outputs())} outputs in {timeout} s"
        time.sleep(0.05)


def test_cancelling_training_from_the_client_stops_it_and_installs_nothing(app_server, client):
    wb = app_server[1]
    before = wb.adapters()
    settings = json.dumps({"steps": 400, "max_length": 24, "consistency_scale": 0})
    start = time.perf_counter()
    job = client.submit(method="elm", settings_json=settings, api_name="/train")
    wait_for_outputs(job, 3)
    per_step = (time.perf_counter() - start) / max(job.outputs()[-1].get("step", 1), 1)
    t0 = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - t0 < 5, "the cancel request itself must return promptly"
    while job_threads("lethe-train"):
        assert time.perf_counter() - t0 < 2 + 3 * per_step + 1, "training ran on after Stop"
        time.sleep(0.05)
    # the whole job would have taken about 400 steps; nothing may appear when that time has passed
    time.sleep(min(400 * per_step, 5))
    after = wb.adapters()
    assert after["variants"] == before["variants"] and after["adapters"] == before["adapters"]


def test_cancelling_a_zo_search_from_the_client_returns_at_once_and_stops_it(client):
    from engine.eco.pipeline import ECOConfig  # noqa: F401  (the endpoint takes the Playground's ECO values)

    job = client.submit(1.0, 10.0, 0.5, 0.1, 20, 0.25, "forget_probe_accuracy", "adaptive", 1.0,
                        "rand_noise_first_n", 4, 10.0, "absolute", "prompt", "", "always", 0.0, 0,
                        api_name="/optimize")
    wait_for_outputs(job, 1, timeout=120)
    t0 = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - t0 < 5
    while job_threads("lethe-optimize"):
        assert time.perf_counter() - t0 < 30, "the ZO search ran on after Stop"
        time.sleep(0.05)


def test_a_finished_training_still_installs_its_adapter(app_server, client):
    wb = app_server[1]
    out = client.predict(method="sku", settings_json=json.dumps({"steps": 2, "max_length": 24}), api_name="/train")
    assert out["method"] == "sku" and out["steps_run"] == 2
    assert "sku" in wb.adapters()["variants"]

"""The /attack endpoint through gradio_client, on the tiny model: the table it returns holds the
clean rows and the attack's rows; bad input (an unknown attack, none, a setting out of range, a
variant whose adapter is missing) is refused with one sentence."""
from __future__ import annotations

import re
from dataclasses import fields

import pytest

from engine import AttackConfig

ECO = ["rand_noise_first_n", 4, 5.0, "absolute", "prompt", "", "always", 0.0, 0]  # the Playground's ECO values


def attack_args(attacks: list[str], variants=("original", "eco"), **changes) -> list:
    """/attack's inputs in order: preset, split, variants, attacks, AttackConfig's fields, ECO's."""
    config = {f.name: f.default for f in fields(AttackConfig)} | {"limit": 2, **changes}
    return ["harry_potter", "test", list(variants), attacks, *config.values(), *ECO]


def test_attack_returns_the_clean_and_the_attacked_rows(client):
    table, heatmap, gate, shown, examples, capsule = client.predict(*attack_args(["jailbreak"]), api_name="/attack")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert {r["attack"] for r in rows} == {"clean", "jailbreak"}
    assert {r["variant"] for r in rows} == {"original", "eco"}
    leak = [r for r in rows if r["metric"] == "keyword_leak_rate"]
    assert leak and all(r["n"] <= 2 for r in leak)
    assert {r["variant"] for r in rows if r["metric"] == "forget_recall"} == {"eco"}
    assert shown["value"] == "jailbreak"  # the example picker, as an update of its choices
    assert any(span.get("class_or_confidence") == "attacked prompt" for span in examples)
    assert capsule and capsule.endswith(".json")


@pytest.mark.parametrize("attacks,changes,message", [
    (["jailbreak", "telepathy"], {}, r"Unknown attack 'telepathy'|'telepathy' .* not in the list of choices"),
    ([], {}, r"Choose at least one variant and one attack\."),
    (["jailbreak"], {"shots": 0}, r"shots must be .*between 1 and 16|less than minimum value 1"),
    (["jailbreak"], {"variants": ["original", "elm"]}, r"Unknown variant 'elm'.*No ELM adapter is loaded"),
], ids=["unknown attack", "no attack", "zero shots", "missing adapter"])
def test_bad_attack_input_is_refused_with_one_sentence(client, attacks, changes, message):
    with pytest.raises(Exception) as err:
        client.predict(*attack_args(attacks, **changes), api_name="/attack")
    text = str(err.value).strip()
    assert re.search(message, text), text
    assert "\n" not in text and "Traceback" not in text

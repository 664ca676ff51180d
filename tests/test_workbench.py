"""The Workbench facade over the tiny model: verbs return plain data; bad prompts are refused."""
import pytest

from engine import GenerationConfig, Workbench


@pytest.fixture()
def wb(tiny_lm):
    return Workbench.from_loaded(tiny_lm, preset="harry_potter")


def test_generate_returns_plain_data(wb):
    out = wb.generate("Who is Merlin?", GenerationConfig(max_new_tokens=8))
    assert set(out) == {"text", "model", "variant", "seconds", "new_tokens", "tokens_per_second"}
    assert isinstance(out["text"], str) and out["new_tokens"] >= 1


@pytest.mark.parametrize("prompt, fragment", [("", "empty"), ("   \n\t", "empty"), ("x" * 20000, "limit"),
                                              ("a\x00b", "NUL")])
def test_bad_prompts_get_one_clear_sentence(wb, prompt, fragment):
    with pytest.raises(ValueError, match=fragment):
        wb.generate(prompt)


def test_unicode_prompts_work(wb):
    for prompt in ["¿Quién es Merlín? 🧙", "من هو ميرلين؟", "tab\tand\x07bell"]:
        assert isinstance(wb.generate(prompt, GenerationConfig(max_new_tokens=4))["text"], str)


def test_preset_summary_and_switching(wb):
    assert "harry_potter" in wb.presets()
    summary = wb.load_preset("harry_potter")
    assert summary["name"] == "harry_potter"


def test_no_model_loaded_says_how_to_fix():
    wb = Workbench(model=None, preset=None)
    with pytest.raises(RuntimeError, match="No model is loaded"):
        wb.generate("hello")

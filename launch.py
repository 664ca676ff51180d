"""Start the Lethe workbench: `python launch.py [--model default] [--preset harry_potter] ...`.

It checks the environment and explains any problem with the exact command that fixes it;
it never installs anything (that is `make setup`).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

REQUIRED = {  # import name -> pip name
    "torch": "torch==2.13.0", "transformers": "transformers", "gradio": "gradio", "peft": "peft",
    "gguf": "gguf", "yaml": "pyyaml", "plotly": "plotly", "pandas": "pandas", "spacy": "spacy",
}
FIX = "run `make setup`"
LOCK = Path(__file__).resolve().parent / "requirements.lock"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Lethe: an interactive workbench for LLM unlearning.")
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a Hub id or a local folder")
    p.add_argument("--preset", default="harry_potter", help="preset name or folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1 keeps it private)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="open a public Gradio share link")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--offline", action="store_true", help="never contact the Hugging Face Hub")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let the models you name here run code from their repository (off by default; "
                        "clients can never switch it on)")
    p.add_argument("--allow-model", action="append", default=[], metavar="NAME",
                   help="a model clients may load from the Model tab, besides the default, --model and the "
                        "models already in the Hugging Face cache (repeatable)")
    p.add_argument("--auth", default=None, metavar="USER:PASS", help="require a login (repeat users with commas)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host or --share without --auth (anyone who reaches it can use it)")
    p.add_argument("--skip-version-check", action="store_true",
                   help="start even when installed packages differ from requirements.lock")
    p.add_argument("--space", action="store_true",
                   help="Hugging Face Spaces mode: bind 0.0.0.0:7860 with caps (also on when SPACE_ID is set)")
    return p.parse_args(argv)


SPACE_SETTINGS = {  # caps for a shared public host; a lab box runs without them
    "max_prompt_chars": 2000, "max_new_tokens_cap": 256, "max_zo_steps": 20, "max_train_steps": 100,
    "model_allowlist": ["default", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"],
    "allow_save": False, "queue_size": 32,
}


def apply_caps(workbench, settings: dict) -> None:
    """The caps that live on the workbench itself (the app enforces the others)."""
    workbench.max_prompt_chars = settings.get("max_prompt_chars", workbench.max_prompt_chars)


def parse_auth(text: str | None) -> list[tuple[str, str]] | None:
    """"user:pass[,user2:pass2]" -> [(user, pass), ...]; a malformed pair is an error."""
    if not text:
        return None
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth takes USER:PASS (several separated by commas), e.g. --auth alice:s3cret.")
        pairs.append((user, password))
    return pairs


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_problem(host: str, share: bool, auth, space: bool, insecure: bool) -> str | None:
    """Why the server must not start as asked (reachable from other machines with no login), or None."""
    if space or auth or insecure or (host in LOOPBACK and not share):
        return None
    where = "a public share link" if share else f"--host {host}"
    return (f"{where} makes the workbench reachable from other machines, and it has no login: add "
            "--auth USER:PASS, or pass --insecure if anyone who can reach it may use it.")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case, '-', '_' and '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """requirements.lock as {canonical name: exact version}; comments and blank lines skipped."""
    pins = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path.name} line {n}: expected NAME==VERSION, got {line!r}.")
        pins[canonical(name.strip())] = version.strip()
    return pins


def lock_drift(path: Path = LOCK) -> list[str]:
    """How the installed distributions differ from the lock, one short phrase each (empty: none).

    A local version label (torch's "+cpu" build) is not a difference: the lock pins the release."""
    installed = {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
                 if d.metadata["Name"]}
    drift = []
    for name, version in sorted(read_lock(path).items()):
        have = installed.get(name)
        if have is None:
            drift.append(f"{name} missing (locked {version})")
        elif have.split("+", 1)[0] != version.split("+", 1)[0]:
            drift.append(f"{name} {have} (locked {version})")
    return drift


def drift_sentence(drift: list[str]) -> str:
    shown = "; ".join(drift[:5]) + (f"; and {len(drift) - 5} more" if len(drift) > 5 else "")
    return f"Installed packages differ from requirements.lock ({shown}): {FIX} to install the locked versions."


def check_environment(lock: Path | None = LOCK) -> list[str]:
    """Problems with this Python environment, each with the command that fixes it."""
    problems = []
    if sys.version_info < (3, 10):
        problems.append(f"Python {sys.version.split()[0]} is too old: Lethe needs Python 3.10 or newer "
                        "(the Makefile uses python3.11 when present).")
    for module, pip_name in REQUIRED.items():
        if importlib.util.find_spec(module) is None:
            problems.append(f"Missing package '{pip_name}': {FIX}.")
    if lock is not None and lock.exists() and (drift := lock_drift(lock)):
        problems.append(drift_sentence(drift))
    return problems


def warm_classifier(workbench) -> None:
    """Load (or, on first use, train) the preset's gate classifier in the background."""
    import threading

    def work():
        try:
            info = workbench.classifier().info()
            print(f"lethe: gate classifier ready (threshold {info['threshold']:.3f})")
        except Exception as exc:  # the UI reports it on first use
            print(f"lethe: gate classifier not ready: {exc}", file=sys.stderr)

    if workbench.preset is not None:
        threading.Thread(target=work, name="lethe-classifier", daemon=True).start()


def main(argv=None) -> int:
    args = parse_args(argv)
    space = args.space or bool(os.environ.get("SPACE_ID"))
    problems = check_environment(None if args.skip_version_check else LOCK)
    if problems:
        for line in problems:
            print(f"lethe: {line}", file=sys.stderr)
        # a Space's platform installs some packages itself: there a version drift only warns
        fatal = [p for p in problems if not (space and p.startswith("Installed packages differ"))]
        if fatal:
            if any(p.startswith("Installed packages differ") for p in fatal):
                print("lethe: (or start anyway with --skip-version-check)", file=sys.stderr)
            return 1
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        auth = parse_auth(args.auth)
    except ValueError as exc:
        print(f"lethe: {exc}", file=sys.stderr)
        return 2
    if problem := exposure_problem(args.host, args.share, auth, space, args.insecure):
        print(f"lethe: {problem}", file=sys.stderr)
        return 2
    host, port = ("0.0.0.0", 7860) if space else (args.host, args.port)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    from app.main import build_app, launch_kwargs
    from engine import Workbench

    try:
        workbench = Workbench(model=args.model, preset=args.preset, device=args.device, dtype=args.dtype,
                              trust_remote_code=args.trust_remote_code)
    except Exception as exc:
        print(f"lethe: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    # with --trust-remote-code only the models named here may be loaded, not everything in the cache
    settings = {"model": args.model, "allow_models": args.allow_model,
                "allow_cached_models": not args.trust_remote_code, **(SPACE_SETTINGS if space else {})}
    apply_caps(workbench, settings)
    demo = build_app(workbench, settings)
    warm_classifier(workbench)
    print(f"lethe: model {workbench.model_info()['name']} ready in {time.perf_counter() - start:.1f} s")
    if (host not in LOOPBACK or args.share) and not auth and not space:
        print("lethe: warning: --insecure: the workbench is reachable from other machines and has no login.",
              file=sys.stderr)
    demo.launch(server_name=host, server_port=port, share=args.share, auth=auth, **launch_kwargs(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

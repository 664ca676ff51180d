"""Preset data from Hugging Face datasets: any role in a preset's `files:` may be a mapping instead
of a JSONL path, and its rows go through the same parsers (and the same checks) as a file's.

    files:
      forget_mcq:
        dataset: cais/wmdp            # a Hub id (needs the network or the datasets cache), or a
        config: wmdp-chem             #   loader name ("json", "csv", "parquet") with data_files,
        split: test                   #   or a folder written by Dataset.save_to_disk
        columns: {question: question, choices: choices, answer: answer}  # Lethe field: column
        where: {subject: college_chemistry}   # optional equality filter on columns
        limit: 200                    # optional: the first N rows after filtering
        record_split: test            # the Lethe split of every row, or
        test_fraction: 0.25           #   a stable hash split by id

Columns not named in `columns` are read under the Lethe field's own name. Rows without an `id`
column get `<role>-<row index>`. A probe role may read a multiple-choice dataset (question,
choices, answer index): the question becomes the prefix through `prefix_template` and the wrong
choices become the distractors. With HF_HUB_OFFLINE=1 a Hub dataset loads only from the cache;
otherwise the error says so in one sentence.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .records import PARSERS, SPLITS, PresetError

FIELDS = {  # record kind -> Lethe fields a dataset row may fill
    "prompt": ("id", "prompt", "answer", "split", "kind", "boundary", "paraphrase", "perturbed"),
    "probe": ("id", "prefix", "answer", "distractors", "split", "question", "choices"),
    "passage": ("id", "text"),
    "mcq": ("id", "question", "choices", "answer", "split"),
}
KEYS = {"dataset", "config", "split", "data_files", "revision", "columns", "where", "limit",
        "record_split", "test_fraction", "id_prefix", "prefix_template"}
DEFAULT_PREFIX = "{question}\nAnswer:"


def _hash_split(ident: str, test_fraction: float) -> str:
    """A stable train/test assignment: the same id always lands in the same split."""
    u = int.from_bytes(hashlib.sha256(ident.encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "train"


def _open(spec: dict, folder: Path, label: str):
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a requirement
        raise PresetError(f"{label}: the 'datasets' package is needed to read a dataset source.") from None
    name = spec["dataset"]
    local = folder / name  # an absolute name stays absolute
    try:
        if local.is_dir() and (local / "dataset_info.json").is_file():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec.get("split", "train")]
            return ds
        data_files = spec.get("data_files")
        if isinstance(data_files, str):
            data_files = str(folder / data_files)
        elif isinstance(data_files, list):
            data_files = [str(folder / f) for f in data_files]
        return datasets.load_dataset(name, spec.get("config"), split=spec.get("split", "train"),
                                     data_files=data_files, revision=spec.get("revision"))
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one sentence
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PresetError(f"{label}: could not load dataset {name!r} ({type(exc).__name__}: {first}).") from None


def _check_spec(spec: dict, label: str) -> None:
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise PresetError(f"{label}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(KEYS))}.")
    if not isinstance(spec.get("dataset"), str) or not spec["dataset"].strip():
        raise PresetError(f"{label}: 'dataset' must name a Hub dataset, a loader or a folder.")
    for key in ("columns", "where"):
        if not isinstance(spec.get(key, {}), dict):
            raise PresetError(f"{label}: '{key}' must be a mapping.")
    if spec.get("record_split") is not None and spec["record_split"] not in SPLITS:
        raise PresetError(f"{label}: 'record_split' must be one of {', '.join(SPLITS)}.")
    tf = spec.get("test_fraction")
    if tf is not None and (not isinstance(tf, (int, float)) or not 0 <= tf <= 1):
        raise PresetError(f"{label}: 'test_fraction' must be a number between 0 and 1.")
    limit = spec.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise PresetError(f"{label}: 'limit' must be a positive whole number.")


def _mcq_to_probe(rec: dict, template: str, where: str) -> dict:
    choices, answer = rec.pop("choices"), rec.get("answer")
    if not isinstance(choices, list) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise PresetError(f"{where}: a probe read from choices needs a list of choices and an answer index.")
    if len(choices) != 4:
        raise PresetError(f"{where}: a probe read from choices needs exactly 4 choices, got {len(choices)}.")
    rec["prefix"] = template.format(question=str(rec.pop("question", "")).strip())
    rec["answer"] = choices[answer]
    rec["distractors"] = [c for i, c in enumerate(choices) if i != answer]
    return rec


def read_dataset(spec: dict, kind: str, folder: Path, label: str, role: str) -> list:
    """Load, map, filter and validate the rows of one dataset source as preset records."""
    _check_spec(spec, label)
    ds = _open(spec, folder, label)
    columns = {**{f: f for f in FIELDS[kind]}, **spec.get("columns", {})}
    unknown = sorted(set(spec.get("columns", {})) - set(FIELDS[kind]))
    if unknown:
        raise PresetError(f"{label}: columns maps unknown field(s) {', '.join(unknown)}; "
                          f"a {kind} has {', '.join(FIELDS[kind])}.")
    names = set(ds.column_names)
    for field, col in spec.get("columns", {}).items():
        if col not in names:
            raise PresetError(f"{label}: column {col!r} (for {field}) is not in the dataset; "
                              f"it has {', '.join(sorted(names))}.")
    where_cond = spec.get("where", {})
    for col in where_cond:
        if col not in names:
            raise PresetError(f"{label}: 'where' names column {col!r}, which is not in the dataset.")
    prefix = spec.get("id_prefix") or role
    template = spec.get("prefix_template", DEFAULT_PREFIX)
    rows, seen = [], set()
    for i, row in enumerate(ds):
        if any(row.get(c) != v for c, v in where_cond.items()):
            continue
        where = f"{label} row {i}"
        rec = {f: row[c] for f, c in columns.items() if c in row and row[c] is not None}
        rec["id"] = str(rec.get("id", f"{prefix}-{i}"))
        if kind == "probe" and "distractors" not in rec and "choices" in rec:
            rec = _mcq_to_probe(rec, template, where)
        if kind == "probe":
            rec.pop("question", None)
            rec.pop("choices", None)
        if spec.get("record_split"):
            rec["split"] = spec["record_split"]
        elif spec.get("test_fraction") is not None:
            rec["split"] = _hash_split(rec["id"], float(spec["test_fraction"]))
        parsed = PARSERS[kind](rec, where)
        if parsed.id in seen:
            raise PresetError(f"{where}: duplicate id {parsed.id!r}.")
        seen.add(parsed.id)
        rows.append(parsed)
        if spec.get("limit") and len(rows) >= spec["limit"]:
            break
    if not rows:
        raise PresetError(f"{label}: no rows left after filtering.")
    return rows

"""Interop with the official ReflectEvo data format: import, export, and merging an adapter into a model.

Official records (one JSON object a line, or a hub dataset's rows):

* D+: `id, question, answer, first_trial_reasoning, first_trial_answer, second_trial_reasoning,
  second_trial_answer, reflections, reason_prompt, reflect_prompt`, where `reason_prompt` is the pair
  [first-trial prompt, second-trial prompt].
* D± and Dpref: `id, question, answer, first_trial_reasoning, first_trial_answer, second_trial_reasoning_chosen,
  second_trial_answer_chosen, reflection_chosen, second_trial_reasoning_rejected, second_trial_answer_rejected,
  reflection_rejected`, optionally `reason_prompt` and `reflection_prompt` (strings).

Import maps them onto `SFTRecord` / `PairRecord`; what the columns cannot hold exactly (a non-string id or
answer, a field absent from this record, an unknown field, the field order) goes into the record's `official`
column, so export reproduces every official field of every record. Official prompts are the text of one user
message, so imported records have `prompts_rendered=False` and training renders them with the tokenizer's chat
template. The official `id` is the question's id, ours `problem_id`: export writes `problem_id` as `id`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal

from models.prompts import FEEDBACK_WRONG, reflection_messages
from problems import BadInput, read_rows
from reflectevo.errors import DataError, RefusedError
from reflectevo.layout import ROUND_FOLDER, RoundLayout
from reflectevo.schema import DatasetManifest, PairRecord, Problem, SFTRecord
from reflectevo.shards import content_key, file_sha256, write_shard

# official field -> our field; a tuple maps a list onto several fields, in order
DPLUS_FIELDS: dict[str, str | tuple[str, ...]] = {
    "id": "problem_id", "question": "question", "answer": "answer",
    "first_trial_reasoning": "first_trial_reasoning", "first_trial_answer": "first_trial_answer",
    "second_trial_reasoning": "second_trial_reasoning", "second_trial_answer": "second_trial_answer",
    "reflections": "reflection", "reason_prompt": ("first_trial_prompt", "second_trial_prompt"),
    "reflect_prompt": "reflection_prompt",
}
PAIR_FIELDS: dict[str, str | tuple[str, ...]] = {
    "id": "problem_id", "question": "question", "answer": "answer",
    "first_trial_reasoning": "first_trial_reasoning", "first_trial_answer": "first_trial_answer",
    "second_trial_reasoning_chosen": "second_trial_reasoning_chosen",
    "second_trial_answer_chosen": "second_trial_answer_chosen", "reflection_chosen": "chosen",
    "second_trial_reasoning_rejected": "second_trial_reasoning_rejected",
    "second_trial_answer_rejected": "second_trial_answer_rejected", "reflection_rejected": "rejected",
    "reason_prompt": "first_trial_prompt", "reflection_prompt": "prompt",
}
PAIR_OPTIONAL = ("reason_prompt", "reflection_prompt")
# The instruction of the reflection prompt built for pairs that lack one: evaluation's default, so DPO learns the
# reflection under the prompt it is evaluated with.
DEFAULT_INSTRUCTION = "1-1-1"

DatasetName = Literal["dplus", "dpm", "dpref"]
ImportKind = Literal["auto", "dplus", "dpm", "dpref"]
Shape = Literal["dplus", "pair"]


class InteropError(DataError):
    """Bad input, named by file, line and field."""


DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def _type_error(name: str, value: Any) -> str | None:
    """Why an official field's value has the wrong type, or None. Ids are the question's (text or a number);
    answers may be numbers, and a trial's answer null (unparseable); everything else is text."""
    if name == "id":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.strip())
        return None if ok else "expected a non-empty string or an integer"
    if name.endswith("answer") or "_answer_" in name:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = isinstance(value, str) or number or (value is None and name != "answer")
        return None if ok else "expected a string or a number" + ("" if name == "answer" else " (or null)")
    if name == "reason_prompt":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        return None if ok else "expected a string or a list of strings"
    return None if isinstance(value, str) else "expected a string"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_official(source: str, split: str = "train") -> Iterator[tuple[str, dict]]:
    """(location, record) for each record of a JSONL/JSON/parquet file (read like problem files, errors naming
    file and line); anything else (a hub dataset id, a local dataset folder) is read with `datasets.load_dataset`."""
    path = Path(source).expanduser()
    if path.is_file():
        try:
            rows = read_rows(source)
        except BadInput as e:
            raise InteropError(str(e)) from None
        for n, record in rows:
            yield f"{source}, line {n}", record
        return
    if not path.exists() and (path.suffix in DATA_SUFFIXES or source.startswith(("/", ".", "~"))):
        raise InteropError(f"{source}: file not found; fix: pass an official JSONL/JSON/parquet file, a dataset "
                           "folder or a hub dataset id")
    from datasets import load_dataset

    try:
        dataset = load_dataset(source, split=split)
    except Exception as e:  # datasets raises many types for "not a dataset"; the cause is in the message
        raise InteropError(f"{source}: not a file, a dataset folder or a loadable hub dataset "
                           f"({type(e).__name__}: {e})") from None
    for n, record in enumerate(dataset, 1):
        yield f"{source}[{split}] row {n}", dict(record)


def detect_shape(record: dict, where: str) -> Shape:
    """'dplus' or 'pair', from the fields: D+ has `reflections`, pairs `reflection_chosen`."""
    if "reflections" in record:
        return "dplus"
    if "reflection_chosen" in record:
        return "pair"
    raise InteropError(f"{where}: neither field 'reflections' (D+) nor 'reflection_chosen' (D± / Dpref); "
                       f"fields present: {sorted(record)}")


def _split_fields(record: dict, fields: dict, where: str, optional: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Our field values, and the `official` side column for what they cannot hold exactly."""
    missing = [name for name in fields if name not in record and name not in optional]
    if missing:
        raise InteropError(f"{where}: missing field {missing[0]!r} (a record of this kind needs {list(fields)})")
    ours: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for name, value in record.items():
        target = fields.get(name)
        problem = _type_error(name, value) if target is not None and not (value is None and name in optional) else None
        if problem:
            raise InteropError(f"{where}, field {name!r}: {problem}, got {json.dumps(value)[:60]}")
        if target is None:
            kept[name] = value
        elif isinstance(target, tuple):
            exact = isinstance(value, list) and len(value) == len(target) and all(isinstance(v, str) for v in value)
            parts = value if isinstance(value, list) else [value]
            ours.update({t: _text(parts[i]) if i < len(parts) else "" for i, t in enumerate(target)})
            if not exact:
                kept[name] = value
        else:
            ours[target] = _text(value)
            if not isinstance(value, str):
                kept[name] = value
    return ours, {"fields": list(record), "values": kept}


def official_to_record(record: dict, shape: Shape, task: str, index: int, where: str, rendered: bool,
                       pair_kind: Literal["pm", "pref"] = "pm") -> SFTRecord | PairRecord:
    """One official record as ours; `index` makes record ids unique (official ids name the question)."""
    fields = DPLUS_FIELDS if shape == "dplus" else PAIR_FIELDS
    ours, official = _split_fields(record, fields, where, () if shape == "dplus" else PAIR_OPTIONAL)
    common = dict(id=f"{task}/{ours['problem_id']}/{index}", task=task, instruction_id="", prompts_rendered=rendered,
                  official=json.dumps(official, ensure_ascii=False))
    if shape == "dplus":
        return SFTRecord(**ours, **common)
    if "prompt" not in ours:  # the official DPO prompt is built from the question and the failed trial
        problem = Problem(id=ours["problem_id"], task=task, kind="freetext", question=ours["question"],
                          answer=ours["answer"])
        ours["prompt"] = reflection_messages(problem, ours["first_trial_reasoning"], DEFAULT_INSTRUCTION,
                                             FEEDBACK_WRONG)[0]["content"]
        common["prompts_rendered"] = False
    return PairRecord(kind=pair_kind, **ours, **common)


def record_to_official(record: SFTRecord | PairRecord) -> dict:
    """The official record: fields in the imported order with their original values, or the standard fields."""
    fields = DPLUS_FIELDS if isinstance(record, SFTRecord) else PAIR_FIELDS
    values = record.model_dump()
    side = json.loads(record.official) if record.official else {"fields": list(fields), "values": {}}
    out = {}
    for name in side["fields"]:
        if name in side["values"]:
            out[name] = side["values"][name]
        else:
            target = fields[name]
            out[name] = [values[t] for t in target] if isinstance(target, tuple) else values[target]
    return out


def _pair_kind(records: list[dict]) -> str:
    """Dpref pairs two fixing reflections, D± a fixing and a failing one: so if every rejected reflection's second
    answer equals the gold answer, the file is Dpref."""
    same = all(_text(r.get("second_trial_answer_rejected")).strip().lower() == _text(r.get("answer")).strip().lower()
               for r in records)
    return "dpref" if same else "dpm"


def in_round(folder: Path) -> Path | None:
    """The round folder `folder` is in (one holding a config.json or manifest.json), or None."""
    for parent in [folder.resolve(), *folder.resolve().parents]:
        m = ROUND_FOLDER.fullmatch(parent.name)
        layout = RoundLayout(parent.parent, int(m.group(1))) if m else None
        if layout and (layout.manifest.exists() or layout.config.exists()):
            return parent
    return None


def check_import_target(out_dir: Path, path: Path, key: str, force: bool) -> None:
    """Refuse to replace data import did not create: a round's datasets are its record, never replaced; another
    import's file is replaced only with --force (the same import again just rewrites the same content)."""
    from reflectevo.shards import finished, marker_path

    round_ = in_round(out_dir)
    if round_ is not None:
        raise RefusedError(f"--out {out_dir}: inside round folder {round_}, whose datasets this import would replace; "
                           "fix: import into a folder of its own, e.g. --out imported/")
    if path.exists() and finished(path, key) is None and not force:
        made = "another import" if marker_path(path).exists() else "something else (no import marker)"
        raise RefusedError(f"--out {out_dir}: {path} exists, written by {made}; fix: pass --force to replace it, "
                           "or choose another --out")


def import_official(source: str, out_dir: str, task: str = "imported", kind: ImportKind = "auto", split: str = "train",
                    rendered_prompts: bool = False, force: bool = False) -> DatasetManifest:
    """Import a file (or hub dataset) of official records into `out_dir/<dplus|dpm|dpref>/` as one parquet shard."""
    rows = list(read_official(source, split))
    if not rows:
        raise InteropError(f"{source}: no records")
    shape = detect_shape(rows[0][1], rows[0][0])
    for where, record in rows[1:]:
        if detect_shape(record, where) != shape:
            raise InteropError(f"{where}: a {detect_shape(record, where)} record in a file of {shape} records")
    if kind == "auto":
        name = "dplus" if shape == "dplus" else _pair_kind([r for _, r in rows])
    elif (kind == "dplus") != (shape == "dplus"):
        raise InteropError(f"{source}: --kind {kind} but the records are {shape} records")
    else:
        name = kind
    records = [official_to_record(r, shape, task, i, where, rendered_prompts, "pref" if name == "dpref" else "pm")
               for i, (where, r) in enumerate(rows)]
    path = Path(out_dir) / name / "train-00000-of-00001.parquet"
    origin = file_sha256(source) if Path(source).is_file() else f"{source}[{split}]"
    key = content_key(stage="import", source=origin, task=task, kind=name, rendered=rendered_prompts)
    check_import_target(Path(out_dir), path, key, force)
    info = write_shard(path, records, SFTRecord if name == "dplus" else PairRecord, key)
    return DatasetManifest(name=name, path=str(path), rows=info.rows, sha256=info.sha256)


def dataset_files(path: str, dataset: str | None = None) -> list[Path]:
    """Parquet files of one dataset: a file, a dataset folder, or a datasets folder with `dataset` named."""
    p = Path(path)
    if p.is_file():
        return [p]
    if dataset:
        p = p / dataset
    files = sorted(p.rglob("*.parquet"))
    folders = sorted({f.parent.name for f in files})
    if not files:
        raise InteropError(f"{p}: no parquet files")
    if len(folders) > 1:
        raise InteropError(f"{p} holds several datasets {folders}; name one with --dataset")
    return files


def export_official(path: str, out: str, dataset: str | None = None) -> int:
    """Write a dataset's records as official JSONL; returns the record count."""
    import pyarrow.parquet as pq

    from reflectevo.shards import atomic_write_text

    files = dataset_files(path, dataset)
    target = Path(out).resolve()
    if target in {f.resolve() for f in files}:
        raise RefusedError(f"--out {out}: is one of the files being exported; fix: choose another --out")
    if target.suffix == ".parquet" or in_round(target.parent) is not None:
        raise RefusedError(f"--out {out}: export writes official JSONL, not into a round folder or a .parquet file; "
                           "fix: choose another --out, e.g. dplus.jsonl")
    lines = []
    for f in files:
        table = pq.read_table(f)
        model = SFTRecord if "reflection" in table.column_names else PairRecord
        lines += [json.dumps(record_to_official(model.model_validate(row)), ensure_ascii=False)
                  for row in table.to_pylist()]
    atomic_write_text(Path(out), "".join(line + "\n" for line in lines))
    return len(lines)



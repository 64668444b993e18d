"""The round config, built from the stage configs; nothing downstream reads a raw dict.

Defaults run one round of SmolLM2-135M-Instruct on the built-in problems on a laptop CPU. A config file (JSON or
YAML) holds any subset of these fields; command-line flags and flow parameters override it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.engines import EngineConfig
from models.training import TrainConfig
from reflectevo.curate import CurateConfig
from reflectevo.evaluate import EvalConfig
from reflectevo.generate import GenerateConfig
from reflectevo.problems import ProblemSource


class RoundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", description="Run name: rounds live in <run_dir>/<name>/round-<r>/.")
    run_dir: str = Field(default="runs", description="Folder holding all runs.")
    model: str = Field(default="smollm2-135m", description="'smollm2-135m', 'tiny', a local path or a hub id.")
    tasks: list[str] = Field(default_factory=lambda: ["choice", "math"], description="Built-in task families.")
    sources: list[ProblemSource] = Field(default_factory=list, description="Problem sources beyond `tasks`.")
    limit: int | None = Field(default=16, ge=1, description="Problems per task at most (before the split); None: all.")
    eval_fraction: float = Field(default=0.25, gt=0.0, lt=1.0, description="Share of problems held out.")
    split_seed: int = Field(default=0, description="Seed of the question-level pool/eval split.")
    shard_size: int = Field(default=16, ge=1, description="Pool problems per generation shard.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)

    def all_sources(self) -> list[ProblemSource]:
        return [ProblemSource(task=t) for t in self.tasks] + list(self.sources)

    def run_path(self) -> Path:
        return Path(self.run_dir) / self.name

    def round_path(self, round_: int) -> Path:
        return self.run_path() / f"round-{round_}"


def load_config(path: str | None, overrides: dict) -> RoundConfig:
    """A config file's fields, then `overrides` (None values ignored); errors name the file, line and field."""
    data: dict = {}
    if path:
        text = Path(path).read_text()
        if path.endswith((".yaml", ".yml")):
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.MarkedYAMLError as e:
                raise ValueError(f"{path}, line {e.problem_mark.line + 1}: not valid YAML ({e.problem})") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of RoundConfig fields, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RoundConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"field '{'.'.join(map(str, err['loc']))}': {err['msg']} (got {err.get('input')!r})" for err in e.errors()
        )
        raise ValueError(f"{path or 'config'}: {problems}") from None

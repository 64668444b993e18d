"""The one contract every stage reads and writes.

Each record is a pydantic model; the parquet schema of every dataset shard is derived from these models by
`features_for`, never typed out a second time, so shards written by different runs always concatenate.
Field names are chosen once and used unchanged in code, shards, dataset cards and exports.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["choice", "math", "code", "freetext"]
# The option letters, in order: the one definition that prompts, problem parsers and the choice verifier share.
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
VerdictStatus = Literal["correct", "wrong", "unparseable", "timeout", "runtime_error", "unverifiable"]


class Record(BaseModel):
    """Base of every stored record: unknown fields are an error, so a typo never becomes silent data."""

    model_config = ConfigDict(extra="forbid")


class Problem(Record):
    """One question with its gold answer, in a task-independent shape."""

    id: str = Field(description="Stable id, unique within its task (source name + line number when the source has none).")
    task: str = Field(description="Task family name, the unit metrics are reported per (e.g. 'choice', 'logiqa').")
    kind: Kind = Field(description="Answer kind; selects the verifier and the answer-format sentence of the prompt.")
    question: str = Field(description="The question as shown to the model; for multiple choice without the options.")
    answer: str = Field(description="Gold answer: a letter, a LaTeX/numeric expression, a string; empty for code.")
    choices: list[str] = Field(default_factory=list, description="Option texts, in letter order (A, B, ...).")
    tests: list[str] = Field(default_factory=list, description="Code tasks: assert statements that must all pass.")
    test_setup_code: str = Field(default="", description="Code tasks: code run before the tests.")
    source: str = Field(default="", description="Where the problem came from (file or dataset id, and line).")


class Verdict(Record):
    """A verifier's judgement of one answer. 'unparseable' and 'timeout' are statuses, never a bare False."""

    status: VerdictStatus
    parsed_answer: str | None = Field(default=None, description="The answer the verifier extracted and compared.")
    reason: str = Field(default="", description="Why, in one line (shown as rich feedback when enabled).")

    @property
    def correct(self) -> bool:
        return self.status == "correct"


class Attempt(Record):
    """One trial: the exact prompt text sent to the engine (captured before generation) and what came back."""

    trial: int = Field(description="1 for the first trial, 2 for the trial after a reflection.")
    prompt: str = Field(description="Exact rendered prompt text sent to the engine, chat template applied.")
    output: str = Field(description="Raw generated text.")
    answer: str | None = Field(description="Final answer extracted from the output (Finish[...]), None if absent.")
    status: VerdictStatus
    reason: str = ""
    output_tokens: int = Field(default=0, description="Generated tokens, for throughput accounting.")


class Reflection(Record):
    """One self-reflection on a failed first trial, and the second trial it led to."""

    instruction_id: str = Field(description="Pool key 'a-b-c' (check style, review aspect, plan level).")
    sample: int = Field(description="Index of this sample among those drawn for the same instruction.")
    prompt: str = Field(description="Exact rendered reflection prompt.")
    text: str = Field(description="The generated reflection.")
    output_tokens: int = 0
    second: Attempt = Field(description="The second trial, answered with this reflection in its prompt.")


class ModelRef(Record):
    """What produced a generation: the base model and the adapter applied to it, each with a content hash."""

    base: str = Field(description="Base model name or path.")
    base_sha256: str = Field(description="Hash of the base model's weight files.")
    adapter: str | None = Field(default=None, description="Path of the LoRA adapter, None for the base model.")
    adapter_sha256: str | None = None


class Trajectory(Record):
    """One problem's whole round: first trial, and for a wrong one its reflections and second trials."""

    round: int
    shard: int
    problem: Problem
    first: Attempt
    reflections: list[Reflection] = Field(default_factory=list)


PROMPTS_RENDERED = (
    "True: the prompt fields are the exact engine-rendered text (chat template applied). False: each is the text of "
    "one user message (records imported from the official ReflectEvo format), rendered through the training "
    "tokenizer's chat template at training time."
)
OFFICIAL = (
    "Records imported from the official ReflectEvo format: JSON {'fields': the record's field names in order, "
    "'values': the original value of each field these columns cannot hold exactly (non-string values, fields "
    "without a column here)}, so an export reproduces the record. Empty for records this pipeline generated."
)


class SFTRecord(Record):
    """D+: a reflection whose second trial was verified correct."""

    id: str = Field(description="Record id: problem id, instruction id and sample index.")
    problem_id: str
    task: str
    question: str
    answer: str
    instruction_id: str
    first_trial_prompt: str
    first_trial_reasoning: str
    first_trial_answer: str
    reflection_prompt: str
    reflection: str
    second_trial_prompt: str
    second_trial_reasoning: str
    second_trial_answer: str
    prompts_rendered: bool = Field(default=True, description=PROMPTS_RENDERED)
    official: str = Field(default="", description=OFFICIAL)


class PairRecord(Record):
    """D± or Dpref: two reflections of the same problem under the same reflection prompt.

    `prompt`, `chosen` and `rejected` are TRL's preference columns; the rest is provenance.
    """

    id: str
    kind: Literal["pm", "pref"] = Field(description="'pm': fixing vs not fixing (D±); 'pref': judge-preferred (Dpref).")
    problem_id: str
    task: str
    question: str
    answer: str
    instruction_id: str
    first_trial_reasoning: str
    first_trial_answer: str
    first_trial_prompt: str = Field(default="", description="Exact rendered first-trial prompt (provenance).")
    prompt: str = Field(description="The exact reflection prompt both reflections answered.")
    chosen: str
    rejected: str
    second_trial_reasoning_chosen: str
    second_trial_answer_chosen: str
    second_trial_reasoning_rejected: str
    second_trial_answer_rejected: str
    judge: str = Field(default="", description="Judge that picked `chosen` (Dpref only).")
    judge_prompts: list[str] = Field(default_factory=list, description="Exact judge prompts (both orders).")
    judge_verdicts: list[str] = Field(default_factory=list, description="Raw judge outputs, one per prompt.")
    prompts_rendered: bool = Field(default=True, description=PROMPTS_RENDERED)
    official: str = Field(default="", description=OFFICIAL)


class ShardManifest(Record):
    """What a finished shard task returns: enough to find, check and count the shard, never its rows."""

    stage: str
    round: int
    shard: int
    key: str = Field(description="Hash of everything that determines the shard's content.")
    path: str
    rows: int
    sha256: str
    counts: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    model: ModelRef | None = None
    worker: dict[str, str | int | None] | None = Field(default=None, description=(
        "Where the shard task ran: {'host', 'pid', 'node_id'}; node_id is the Ray node id, None outside Ray."))


class DatasetManifest(Record):
    name: str
    path: str
    rows: int
    sha256: str
    counts: dict[str, int] = Field(default_factory=dict)


class AdapterManifest(Record):
    path: str | None = Field(description="Adapter directory, None when training was skipped.")
    sha256: str | None = None
    setting: str = ""
    rows: int = 0
    skipped_reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    dataset: str = Field(default="", description="Name of the dataset the setting trained on (dplus, dpm, dpref).")
    data_sha256: str | None = Field(default=None, description="Hash of that dataset's file.")


class RoundManifest(Record):
    """Everything one round produced, written as `manifest.json` in the round folder."""

    round: int
    run_dir: str
    model: ModelRef = Field(description="The model (and adapter) the round generated and evaluated with.")
    config: dict[str, Any]
    trajectories: list[ShardManifest] = Field(default_factory=list)
    datasets: dict[str, DatasetManifest] = Field(default_factory=dict)
    adapter: AdapterManifest | None = None
    metrics_path: str | None = None
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Held-out metrics per task, each with its `_stderr` (absent where a task "
                                          "has one problem: no spread to estimate).")


# ---------------------------------------------------------------------------------------------------------------
# datasets.Features derived from the models above


def _feature(annotation: Any):
    from datasets import List, Value

    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (Union, types.UnionType):
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation!r}: only `X | None` maps to a parquet column")
        return _feature(args[0])
    if origin is Literal:
        return Value("string")
    if origin is list:
        return List(_feature(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: _feature(f.annotation) for name, f in annotation.model_fields.items()}
    scalar = {str: "string", int: "int64", float: "float64", bool: "bool"}
    if annotation in scalar:
        return Value(scalar[annotation])
    raise TypeError(f"no parquet column type for {annotation!r}")


def features_for(model: type[BaseModel]):
    """The `datasets.Features` of a record model, so every shard of that record has one schema."""
    from datasets import Features

    return Features({name: _feature(f.annotation) for name, f in model.model_fields.items()})

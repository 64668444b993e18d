"""The contract's configs: one typed config per stage, and the round config built from them.

Nothing downstream reads a raw dict. Defaults run one round of SmolLM2-135M-Instruct on the built-in problems on a
laptop CPU. A config file (JSON or YAML) holds any subset of the round's fields; command-line flags and flow
parameters override it.

Every error here is a `ConfigError` naming the file, the line, the field and the fix, so the CLI can reject a
bad run before it starts a server or loads a model (`stages.prepare.preflight`), and no stage retries it. The
stage configs live here, not beside their stages, so that models/, problems/ and verifiers/ can take them
without importing a stage: this module imports nothing of ours outside the contract.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reflectevo.errors import ConfigError
from reflectevo.layout import RoundLayout
from reflectevo.schema import Kind

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# Flags of `reflectevo evolve` by the config field they set, so an error about a flag's value names the flag.
FLAGS = {"model": "--model", "tasks": "--tasks", "limit": "--limit", "run_dir": "--run-dir", "name": "--name",
         "engine.name": "--engine", "runner": "--runner"}


# Built-in task families: problems/data/<task>.jsonl.
BUILTIN_TASKS = ("choice", "math")
# Row formats a ProblemSource may name; problems/registry.py holds one parser per name (tests/problems checks both).
PROBLEM_FORMATS = ("builtin", "logiqa", "hendrycks_math", "mbpp", "bigbench", "bigbench_free", "mapped")
# Keys of the 32-instruction pool (models/prompts.py INSTRUCTIONS): <1-2>-<1-8>-<1-2>.
INSTRUCTION_ID = re.compile(r"[12]-[1-8]-[12]")
Setting = Literal["sft_one_stage", "sft_two_stage", "dpo_pm", "dpo_pref"]


class SamplingConfig(BaseModel):
    """Decoding for one engine call; identical on every machine and engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(default=1, ge=1, description="Samples per prompt.")
    temperature: float = Field(default=0.0, ge=0.0, description="0 means greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, description="Generated tokens at most; always set.")
    stop: list[str] = Field(default_factory=list, description="Stop strings; generation ends before them.")
    seed: int | None = Field(default=0, description="Sampling seed; same seed, same prompts -> same outputs.")


def cpu_runs_bf16() -> bool:
    """Whether this CPU has bf16 matrix kernels (AVX-512 BF16, which every AMX CPU also has)."""
    import torch

    return torch.cpu._is_avx512_bf16_supported()


class EngineConfig(BaseModel):
    """Which engine runs a stage, and how. Frozen: stages take it as it is, and it keys the loaded engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["auto", "transformers", "vllm"] = Field(
        default="auto",
        description="'auto' picks vLLM when it is importable or `vllm_python` is set, else transformers.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description=(
            "'auto': the checkpoint's own dtype (its config's) where the hardware computes it natively: bf16 on a "
            "CUDA GPU with bf16 or on a CPU with AVX-512 BF16 (whose AMX or BF16 dot products run bf16 matmuls 3-4x "
            "faster than float32); else float32 (bf16 is very slow without them). SmolLM2 is bf16, the tiny test "
            "models float32."))
    batch_size: int = Field(default=32, ge=1, description="transformers: prompts per generate() call.")
    threads: int | None = Field(default=None, description="torch CPU threads; None keeps torch's default.")
    max_model_len: int = Field(default=2048, description="vLLM: context length to reserve.")
    gpu_memory_utilization: float = Field(default=0.85, description="vLLM: share of GPU memory to use.")
    cpu_kv_cache_gib: float = Field(default=4.0, gt=0, description=(
        "vLLM on a CPU: the KV cache's size in GiB. vLLM's own default reserves `gpu_memory_utilization` of the "
        "machine's RAM and refuses to start when other processes hold more than the rest, as the round's "
        "training does; 4 GiB holds ~90k tokens of SmolLM2-135M."))
    # Where a shard runs, never what it generates: left out of shard content keys.
    vllm_python: str | None = Field(
        default_factory=lambda: os.environ.get("REFLECTEVO_VLLM_PYTHON") or None, validate_default=True,
        description=("vLLM: the Python interpreter of an environment that has vLLM (scripts/setup-vllm-cpu.sh makes "
                     ".venv-vllm/bin/python); the vLLM worker process runs under it, so the application's own "
                     "environment needs no vLLM. With it set, 'auto' picks vLLM. Default: $REFLECTEVO_VLLM_PYTHON; "
                     "None: this interpreter."))
    num_gpus: float | None = Field(default=None, ge=0, description=(
        "runner=ray: GPUs each generation shard asks Ray for; None: 1 when the cluster has GPUs, else 0."))
    num_cpus: float = Field(default=1, ge=0, description="runner=ray: CPUs each generation shard asks Ray for.")

    def resolved_dtype(self, stored: str) -> str:
        """The dtype to compute in: `dtype`, or for 'auto' the checkpoint's own (`stored`, from its config) where
        the hardware computes it natively, else float32."""
        if self.dtype != "auto":
            return self.dtype
        if stored not in ("bfloat16", "float16"):
            return "float32"
        import torch

        if torch.cuda.is_available():
            return stored if stored == "float16" or torch.cuda.is_bf16_supported() else "float32"
        return "bfloat16" if stored == "bfloat16" and cpu_runs_bf16() else "float32"

    @field_validator("vllm_python")
    @classmethod
    def _executable(cls, value: str | None) -> str | None:
        """An absolute path to an executable, checked before any stage starts; not resolved, since a virtualenv's
        `python` is a symlink whose target is outside the environment."""
        if value is None:
            return None
        if not os.access(value, os.X_OK) or os.path.isdir(value):
            raise ValueError(f"{value!r} is not an executable Python: build it with scripts/setup-vllm-cpu.sh, or "
                             "unset REFLECTEVO_VLLM_PYTHON to generate in this environment")
        return os.path.abspath(value)


class TrainConfig(BaseModel):
    """The setting, LoRA and optimiser settings.

    LoRA defaults are the paper's preset (r 8, alpha 32, dropout 0.1, targets q/k/v projections; DPO beta 0.01),
    so `TrainConfig()` is the paper's configuration and a config file changes only what it names.
    """

    model_config = ConfigDict(extra="forbid")

    setting: Setting = Field(default="sft_one_stage", description="Reflection-learning setting (models/training.py).")
    lora: bool = Field(default=True, description="True: train a LoRA adapter over the base. False: fine-tune every "
                       "weight; the round then saves a whole checkpoint, which the next round loads as its model.")
    lora_r: int = Field(default=8, ge=1, description="LoRA rank (paper: 8).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha (paper: 32).")
    lora_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="LoRA dropout (paper: 0.1).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj"],
        description="Module names LoRA wraps (paper: q/k/v projections), MLP ones included (e.g. up_proj), or "
        "'all-linear' (PEFT: every linear layer but the output head).")
    beta: float = Field(default=0.01, gt=0.0, description="DPO beta (paper: 0.01).")
    learning_rate: float | None = Field(
        default=None, gt=0.0, description="None: with LoRA 2e-4 for SFT, 5e-6 for DPO; without, 2e-5 and 5e-7 "
        "(LoRA takes about 10x a full fine-tune's rate; the paper's full-parameter DPO used 5e-7).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="Training precision: 'auto' is bf16 mixed precision on a CUDA GPU with bf16, and "
        "on a CPU with bf16 kernels (AVX-512 BF16 or AMX) for a checkpoint stored in bf16 (SmolLM2: several times "
        "fp32's tokens/s there, bench/training.py), as the engines compute; else fp32 (the tiny float32 models, and "
        "CPUs without bf16 kernels, which run it several times slower).")
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int = Field(default=-1, description="Stop each stage after this many optimiser steps; -1: all epochs.")
    max_records: int | None = Field(
        default=None, ge=1, description="Train on at most this many of the dataset's records, a seeded sample; null: "
        "all. bench/learning.py sets it for the learning lineage and the shuffled-verifier control alike, so the "
        "control trains on as much data, for as many steps, as the lineage it is compared with.")
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=16, description="Tokens per training sequence at most.")
    eval_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Share of problems (never rows: a problem's records stay on one "
        "side) held out for an eval loss and early stopping; 0 or too few problems: no eval split.")
    eval_steps: int = Field(default=20, ge=1, description="Evaluate (and checkpoint) every this many steps.")
    early_stopping_patience: int = Field(default=3, ge=1, description="Evaluations without improvement before "
                                         "stopping; the best checkpoint is kept.")
    seed: int = Field(default=0, description="Seeds the problem split, LoRA initialisation and data order.")

    def lr(self) -> float:
        dpo = self.setting.startswith("dpo")
        return self.learning_rate or ((5e-6 if dpo else 2e-4) if self.lora else (5e-7 if dpo else 2e-5))

    def bf16(self, stored: str = "float32") -> bool:
        """Whether to train in bf16 mixed precision, for a checkpoint whose weights are stored in `stored`."""
        import torch

        if self.dtype != "auto":
            return self.dtype == "bfloat16"
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        return stored == "bfloat16" and cpu_runs_bf16()


class TokenLimits(BaseModel):
    """How many tokens a trial and a reflection may generate: one definition for generation and evaluation, which
    each set their own (`generate.trial_max_tokens`, `evaluate.trial_max_tokens`)."""

    model_config = ConfigDict(extra="forbid")

    trial_max_tokens: int = Field(default=192, ge=1, description="Generated tokens at most per trial (greedy).")
    reflection_max_tokens: int = Field(default=128, ge=1, description="Generated tokens at most per reflection.")


class GenerateConfig(TokenLimits):
    """Sampling and sizes of the generation stage."""

    fewshot: int = Field(default=3, ge=0, le=3, description="Worked examples (models/prompts.py EXEMPLARS) in the "
                         "reasoning and correction prompts; evaluation asks with the same prompts.")
    instructions: int = Field(default=1, ge=1, le=32, description="Pool instructions drawn per failed problem (m).")
    reflections: int = Field(default=2, ge=1, description="Reflections sampled per instruction (k).")
    temperature: float = Field(default=0.8, ge=0.0, description="Reflection sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Reflection nucleus sampling.")
    first_trial_temperature: float = Field(
        default=0.0, ge=0.0, description="First-trial sampling temperature; 0 is greedy. A model without the skill "
        "answers every problem alike when greedy (one letter for a whole pool), so every reflection then gives up the "
        "same answer and D+ never holds that answer's fixes; sampling varies the failed answers the loop learns from. "
        "Second trials stay greedy, and evaluation has its own settings.")
    first_trial_model: Literal["round", "base"] = Field(
        default="round", description="Which model makes the first trials the round reflects on: the round's own, or "
        "the base model every round (as `evaluate.protocol: paper` does for evaluation). Training teaches only the "
        "reflection and correction roles, so under full fine-tuning the untrained reasoning role can drift until it "
        "no longer answers, and a round then has no failed answers to reflect on; 'base' keeps the failures the "
        "lineage learns to fix the ones it is evaluated on (configs/world.json).")
    seed: int = Field(default=0, description="Seeds instruction draws and reflection sampling.")
    rich_feedback: bool = Field(default=False, description="Show the verifier's reason to the reflector, not just "
                                "'wrong'; the code verifier's then names the failing assert, the values and the output.")
    verdicts: Literal["verifier", "shuffled", "inverted"] = Field(
        default="verifier", description="'shuffled' is the negative control of learning: each trial's verdict is "
        "moved to another trial of the same step of the shard by a seeded permutation, which keeps the share "
        "judged correct and cuts its link to the answer. A loop that still 'learns' under it learns something "
        "other than the task. 'inverted' is an injected fault (bench/learning.py --fault unfixed-dplus): each "
        "second trial's verdict is flipped, so D+ holds the reflections that did not fix. Evaluation always uses "
        "the true verifier.")
    weights: Literal["latest", "one-round-old"] = Field(
        default="latest", description="The weights a round generates and trains from: the lineage's latest, or "
        "(an injected fault, bench/learning.py --fault stale-weights) the ones a round older.")

    def trial_sampling(self) -> SamplingConfig:
        return SamplingConfig(n=1, temperature=0.0, max_tokens=self.trial_max_tokens, seed=self.seed)

    def first_trial_sampling(self) -> SamplingConfig:
        return SamplingConfig(n=1, temperature=self.first_trial_temperature,
                              max_tokens=self.trial_max_tokens, seed=self.seed)

    def reflection_sampling(self, n: int) -> SamplingConfig:
        return SamplingConfig(n=n, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.reflection_max_tokens, seed=self.seed)


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_dplus_per_problem: int | None = Field(
        default=None, ge=1, description="Cap on D+ records per problem and instruction; null keeps every fixing "
        "reflection, as the paper does. With k sampled reflections a problem whose answer the sampler already favours "
        "is fixed more often, so uncapped D+ over-weights the model's own preferences (configs/world.json: 1).")
    max_pm_pairs_per_problem: int = Field(default=4, ge=0, description="Cap on D± pairs per problem and instruction.")
    max_pref_pairs_per_problem: int = Field(default=2, ge=0, description="Cap on Dpref candidates per group.")
    judge: str = Field(default="self", description="Dpref judge: 'self' (the round's model), 'none' (no Dpref), "
                       "'model:<name or path>' (another local model, loaded like `model`) or 'openai:<base_url>' "
                       "(an OpenAI-compatible chat completions endpoint; set judge_model).")
    judge_model: str = Field(default="", description="Model name sent to an 'openai:' judge endpoint.")
    judge_api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the 'openai:' "
                                   "endpoint's API key; unset: no Authorization header (local servers).")
    judge_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout of an 'openai:' judge.")
    judge_max_tokens: int = Field(default=32, ge=1)

    @field_validator("judge")
    @classmethod
    def _judge_kind(cls, value: str) -> str:
        kind, _, target = value.partition(":")
        if value in ("self", "none") or (kind in ("model", "openai") and target):
            return value
        raise ValueError(f"curate.judge {value!r}: use 'self', 'none', 'model:<name or path>' or 'openai:<base_url>'")

    @model_validator(mode="after")
    def _openai_needs_model(self) -> CurateConfig:
        if self.judge.startswith("openai:") and not self.judge_model:
            raise ValueError(f"curate.judge {self.judge!r} needs curate.judge_model, the model name the endpoint "
                             "serves")
        return self


class EvalConfig(TokenLimits):

    protocol: Literal["paper", "evolution"] = Field(
        default="paper", description="paper: trial 1 from the base model, the same in every round; evolution: "
        "trial 1 from the round's model.")
    feedback: Literal["oracle", "intrinsic"] = Field(
        default="oracle", description="oracle (the paper): only wrong answers are reflected on, and the model is "
        "told they were wrong, so accuracy cannot fall; intrinsic (SCoRe): every answer is reflected on and retried "
        "and no verdict is shown, so a right answer can turn wrong (delta_c2i).")
    turns: int = Field(default=1, ge=1, le=16, description="Reflection turns T at most: accuracy is reported after "
                       "each trial, acc@t1 .. acc@t{T+1}.")
    instruction_id: str = Field(default="1-1-1", description="Pool instruction used for the test-time reflection.")

    def model_post_init(self, _) -> None:
        if not INSTRUCTION_ID.fullmatch(self.instruction_id):
            raise ValueError(f"evaluate.instruction_id {self.instruction_id!r} is not a pool key like '1-1-1'")

    def trial_sampling(self) -> SamplingConfig:
        return SamplingConfig(max_tokens=self.trial_max_tokens)

    def reflection_sampling(self) -> SamplingConfig:
        return SamplingConfig(max_tokens=self.reflection_max_tokens)

    def trial_names(self) -> list[str]:
        return [f"acc@t{k}" for k in range(1, self.turns + 2)]

    def metric_names(self) -> list[str]:
        """Every metric of a results row; each also gets its `_stderr`.

        acc@t{k}: accuracy of the answer standing after trial k; acc@t{k}_noreflect: the same retries without the
        reflection (the baseline that a gain from reflection must beat); delta = acc@t2 - acc@t1; reflection_gain =
        acc@t2 - acc@t2_noreflect; delta_i2c / delta_c2i: share of all problems wrong at t1 and right at t2, and the
        reverse.
        """
        retries = [f"{name}_noreflect" for name in self.trial_names()[1:]]
        return [*self.trial_names(), *retries, "delta", "reflection_gain", "delta_i2c", "delta_c2i"]


class ProblemSource(BaseModel):
    """One task family to load. The built-in families need only `task`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="Task family name; a built-in name ('choice', 'math') needs nothing else.")
    format: str = Field(default="builtin", description="Row format: 'builtin' (our own Problem records: the "
                        "built-in task's file, or `path`) or a registered parser name.")
    path: str | None = Field(default=None, description="Local .jsonl/.json/.parquet file; or use `hub_id`.")
    hub_id: str | None = Field(default=None, description="Dataset id for `datasets.load_dataset` (needs the hub).")
    split: str = Field(default="test", description="Split to read when loading from the hub.")
    kind: Kind | None = Field(default=None, description="Override the answer kind the format implies.")
    columns: dict[str, str] = Field(default_factory=dict, description="'mapped' format: our field -> source column.")

    @model_validator(mode="after")
    def _readable(self) -> ProblemSource:
        if self.format not in PROBLEM_FORMATS:
            raise ValueError(f"unknown problem format {self.format!r}; known: {', '.join(sorted(PROBLEM_FORMATS))}")
        if self.format == "builtin" and self.task not in BUILTIN_TASKS and not self.path:
            raise ValueError(f"unknown built-in task {self.task!r}; known: {', '.join(sorted(BUILTIN_TASKS))} "
                             "(a file of our own Problem records needs `path`; a public format needs `format` too)")
        if self.format != "builtin" and not (self.path or self.hub_id):
            raise ValueError(f"problem source {self.task!r} needs `path` or `hub_id` for format {self.format!r}")
        return self


class RoundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1,
                      description="Run name: rounds live in <run_dir>/<name>/round-<r>/.")
    run_dir: str = Field(default="runs", min_length=1, description="Folder holding all runs.")
    model: str = Field(default="smollm2-135m", min_length=1,
                       description="'smollm2-135m', 'tiny', 'tiny-world', a local path or a hub id.")
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

    def layout(self, round_: int) -> RoundLayout:
        return RoundLayout(self.run_path(), round_)


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



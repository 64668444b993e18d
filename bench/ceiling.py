"""How much of the world's rule can the tiny model learn at all? Perfect data through the real training stage.

    python bench/ceiling.py                              # 500 perfect D+ records, configs/world.json's training
    python bench/ceiling.py --records 1500 --epochs 6    # more data, more epochs
    python bench/ceiling.py --model path/to/checkpoint   # another format model (a variant build, say)

A round can teach only what its model can learn from the D+ it makes. This bench removes the loop's noise: every
record is a fix a perfect reflector would make (the failed option, then the right one, in the tiny model's own
reflection format, models/tiny.py), trained with `models.training.train_adapter` on the config's `train` block
and evaluated on held-out world problems with the round's own evaluation (oracle feedback, greedy). It also
probes the ability every rule over option values builds on: answering "Which option holds X?".

Prints `lookup_acc=<x> n=<probes>`, then
`records=<n> epochs=<e> acc@t2_before=<x> acc@t2_after=<y> acc@t2_stderr=<s> n=<held out> train_s=<t>`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for key, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items():
    os.environ.setdefault(key, value)  # before torch is imported


def perfect_records(engine, problems, seed: int):
    """One D+ record per problem: a wrong first answer, a reflection naming the right option, the right retry."""
    from models.prompts import FEEDBACK_WRONG, correction_messages, reasoning_messages, reflection_messages
    from problems.world import LETTERS
    from reflectevo.schema import SFTRecord

    rng, instruction = random.Random(seed), "1-1-1"
    for p in problems:
        failed_letter = rng.choice([c for c in LETTERS if c != p.answer])
        failed = f"Finish[{failed_letter}]"
        reflection = f"{rng.choice(['check', 'the step', 'plan'])} option ({failed_letter}) failed, try option ({p.answer})."
        yield SFTRecord(
            id=f"ceiling/{p.id}", problem_id=p.id, task=p.task, question=p.question, answer=p.answer,
            instruction_id=instruction, first_trial_prompt=engine.render(reasoning_messages(p)),
            first_trial_reasoning=failed, first_trial_answer=failed_letter,
            reflection_prompt=engine.render(reflection_messages(p, failed, instruction, FEEDBACK_WRONG)),
            reflection=reflection, second_trial_prompt=engine.render(correction_messages(p, failed, reflection)),
            second_trial_reasoning=f"Finish[{p.answer}]", second_trial_answer=p.answer)


def lookup_accuracy(engine, count: int, seed: int) -> float:
    """Share of fresh "Which option holds X?" questions the model answers with X's letter (chance: 0.25)."""
    from reflectevo.config import SamplingConfig
    from models.prompts import reasoning_messages
    from problems.world import LETTERS
    from reflectevo.schema import Problem

    rng, problems = random.Random(seed), []
    for i in range(count):
        values, target = [str(v) for v in rng.sample(range(10, 100), len(LETTERS))], rng.randrange(len(LETTERS))
        problems.append(Problem(id=str(i), task="lookup", kind="choice", question=f"Which option holds {values[target]}?",
                                answer=LETTERS[target], choices=values))
    outs = engine.generate([engine.render(reasoning_messages(p)) for p in problems], SamplingConfig(max_tokens=8))
    return sum(f"Finish[{p.answer}]" in o[0].text for o, p in zip(outs, problems)) / count


def main() -> None:
    from models.engines import load_engine, release_engines
    from models.loading import resolve_model
    from models.training import train_adapter
    from problems.world import world_problems
    from reflectevo.config import EngineConfig, EvalConfig, TrainConfig
    from reflectevo.schema import DatasetManifest, SFTRecord
    from reflectevo.shards import write_shard
    from stages.evaluate import run_eval
    from stages.trial import first_trials

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rule", default="even")
    p.add_argument("--records", type=int, default=500, help="perfect D+ records to train on")
    p.add_argument("--eval", type=int, default=300, help="held-out world problems")
    p.add_argument("--epochs", type=float, help="override configs/world.json's train.epochs")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--high", type=int, default=99, help="the largest option value (problems.world)")
    p.add_argument("--model", help="override configs/world.json's model (a name or a checkpoint path)")
    args = p.parse_args()

    world = json.loads((ROOT / "configs" / "world.json").read_text())
    train_cfg = TrainConfig.model_validate({**world["train"], **({"epochs": args.epochs} if args.epochs else {})})
    eval_cfg, fewshot = EvalConfig.model_validate(world["evaluate"]), world["generate"]["fewshot"]
    model = resolve_model(args.model or world["model"])
    engine_cfg = EngineConfig(name="transformers", batch_size=64)
    engine = load_engine(engine_cfg, model, None)
    print(f"lookup_acc={lookup_accuracy(engine, 200, args.seed):.3f} n=200", flush=True)

    problems = world_problems(args.rule, args.records + args.eval, args.seed, high=args.high)
    train, held = problems[: args.records], problems[args.records :]
    out = Path(tempfile.mkdtemp(prefix="reflectevo-ceiling-"))
    info = write_shard(out / "dplus" / "train.parquet", list(perfect_records(engine, train, args.seed)), SFTRecord,
                       "ceiling")
    datasets = {"dplus": DatasetManifest(name="dplus", path=str(out / "dplus" / "train.parquet"), rows=info.rows,
                                         sha256=info.sha256)}
    first = first_trials(engine, held, eval_cfg.trial_sampling(), fewshot)
    before, _ = run_eval(engine, held, eval_cfg, first, fewshot)
    release_engines()
    trained = train_adapter(train_cfg, model, None, datasets, str(out / "adapter"))
    after, _ = run_eval(load_engine(engine_cfg, model, trained.path), held, eval_cfg, first, fewshot)
    print(f"records={args.records} epochs={train_cfg.epochs:g} acc@t2_before={before['all']['acc@t2']:.3f} "
          f"acc@t2_after={after['all']['acc@t2']:.3f} acc@t2_stderr={after['all']['acc@t2_stderr']:.3f} "
          f"n={len(held)} train_s={trained.metrics.get('train_s', 0):.0f}")


if __name__ == "__main__":
    main()

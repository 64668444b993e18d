"""Does the loop learn? Rounds on the learnable world (or any choice-kind problems file), beside a control.

    python bench/learning.py                        # 3 rounds on the world, with the shuffled-verifier control
    python bench/learning.py --problems my.jsonl    # any problems file of the `choice` kind, same model and loop
    python bench/learning.py --rounds 3 --no-control --pool 300 --eval 300   # the quick look

The world (problems/world.py) is split by the usual question-level split into a generation pool and
held-out problems; `configs/world.json` is the loop's config (the format-pretrained `tiny-world` model, full
fine-tuning). Round 0 is the model before any training; the learning lineage and the control then run side by side,
each in its own process. The control runs the same rounds with
`generate.verdicts: shuffled`: the verifier's verdicts are permuted across the shard, so the loop keeps its
share of "fixes" but loses what they mean. Evaluation always uses the true verifier.

Each round's line also splits the retries of problems wrong at trial 1: `retry_changed`, how often the retry
answered differently (stopping to repeat a failed answer raises it), and `right_when_changed`, how often a changed
answer was right (1/3 at chance with four options; above it, the rule is being learnt).

Prints one line per round, the control's rounds, whether the targets were met, and last
`learning_gain=<acc@t2 last round - round 0> gain_stderr=<paired> control_gain=<same, control> seconds=<wall>`;
writes the curve (Acc@t1, Acc@t2 by round with stderr bars, the control beside them) as a PNG. Exits 1 when a
target is missed: gain >= --min-gain and >= --min-z stderr, no round's Acc@t2 below the previous one's (beyond
noise: --slack stderr), control gain <= --max-control.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before torch or prefect is imported. Two engine slots: the learning lineage and the control run side by side,
# each in its own process on one core (the world's model is small enough for two on any machine).
for key, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                   "REFLECTEVO_ENGINE_SLOTS": "2"}.items():
    os.environ.setdefault(key, value)


def write_configs(problems: str, pool_fraction: float, run_dir: str, control: bool) -> list[str]:
    """The world config for this problems file, and the control's, which differs only in its verdicts."""
    base = json.loads((ROOT / "configs" / "world.json").read_text())
    base.update(run_dir=run_dir, sources=[{"task": Path(problems).stem, "path": problems}],
                eval_fraction=1 - pool_fraction)
    paths = []
    for name, verdicts in [("learning", "verifier")] + ([("control", "shuffled")] if control else []):
        cfg = {**base, "name": name, "generate": {**base["generate"], "verdicts": verdicts}}
        path = Path(run_dir) / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=1))
        paths.append(str(path))
    return paths


def measure(args) -> dict:
    """Run the learning curve (and the control) and return every figure the bench prints."""
    from flows.learning import learning_curve
    from problems.world import write_world
    from stages.report import curve_point, paired_gain, plot_curves, retry_breakdown

    start = time.perf_counter()
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="reflectevo-learning-")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.problems:
        problems, pool_fraction = str(Path(args.problems).resolve()), 1 - args.eval_fraction
    else:
        problems = str(write_world(run_dir / f"world-{args.rule}.jsonl", args.rule, args.pool + args.eval, args.seed,
                                   high=args.high))
        pool_fraction = args.pool / (args.pool + args.eval)
    curves = learning_curve(write_configs(problems, pool_fraction, str(run_dir), not args.no_control), args.rounds)
    points = {name: {r: {**curve_point(p), **retry_breakdown(p)} for r, p in curve.items()}
              for name, curve in curves.items()}
    gains = {name: paired_gain(curve[0], curve[max(curve)]) for name, curve in curves.items()}
    plot_curves(points, args.png, f"{Path(problems).name}: held-out accuracy by round (0: untrained), "
                f"{int(points['learning'][0]['n'])} problems, stderr bars")
    return {"points": points, "gains": gains, "seconds": time.perf_counter() - start}


def missed_targets(result: dict, args) -> list[str]:
    learning, (gain, gain_err) = result["points"]["learning"], result["gains"]["learning"]
    last, missed = max(learning), []
    if last < args.rounds:
        missed.append(f"the lineage stopped after round {last} of {args.rounds}")
    if gain < args.min_gain or gain < args.min_z * gain_err:
        missed.append(f"gain {gain:.3f} is below {args.min_gain} or {args.min_z} stderr ({gain_err:.3f})")
    for r in range(1, last + 1):
        if learning[r]["acc@t2"] < learning[r - 1]["acc@t2"] - args.slack * learning[r]["acc@t2_stderr"]:
            missed.append(f"acc@t2 fell from round {r - 1} to {r}")
    if "control" in result["gains"] and result["gains"]["control"][0] > args.max_control:
        missed.append(f"control gain {result['gains']['control'][0]:.3f} above {args.max_control}")
    return missed


def run(args) -> int:
    result = measure(args)
    for r, p in sorted(result["points"]["learning"].items()):
        print(f"round={r} acc@t1={p['acc@t1']:.3f} acc@t2={p['acc@t2']:.3f} acc@t2_stderr={p['acc@t2_stderr']:.3f} "
              f"acc@t2_noreflect={p['acc@t2_noreflect']:.3f} n={int(p['n'])} retry_changed={p['changed']:.3f} "
              f"right_when_changed={p['right_when_changed']:.3f}")
    for r, p in sorted(result["points"].get("control", {}).items()):
        print(f"control round={r} acc@t1={p['acc@t1']:.3f} acc@t2={p['acc@t2']:.3f} "
              f"acc@t2_stderr={p['acc@t2_stderr']:.3f} n={int(p['n'])} retry_changed={p['changed']:.3f} "
              f"right_when_changed={p['right_when_changed']:.3f}")
    missed = missed_targets(result, args)
    print("targets=met" if not missed else "targets=missed: " + "; ".join(missed))
    gain, gain_err = result["gains"]["learning"]
    control = result["gains"].get("control", (float("nan"), float("nan")))[0]
    print(f"learning_gain={gain:.3f} gain_stderr={gain_err:.3f} control_gain={control:.3f} "
          f"seconds={result['seconds']:.0f}")
    return 1 if missed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--problems", help="a choice-kind problems file instead of the world")
    p.add_argument("--eval-fraction", type=float, default=1 / 3, help="held-out share of --problems")
    p.add_argument("--rule", default="even", help="the world's rule (problems/world.py)")
    p.add_argument("--pool", type=int, default=600, help="world problems in the generation pool")
    p.add_argument("--eval", type=int, default=300, help="world problems held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--high", type=int, default=29, help="the world's largest option value (the smallest is 10); "
                   "the loop has learnt 20 numbers; 90 are unmeasured with its current settings")
    p.add_argument("--no-control", action="store_true", help="skip the shuffled-verifier control")
    p.add_argument("--out", help="run folder (default: a new temp folder)")
    p.add_argument("--png", default=str(ROOT / "docs" / "learning.png"))
    p.add_argument("--min-gain", type=float, default=0.25)
    p.add_argument("--min-z", type=float, default=4.0)
    p.add_argument("--max-control", type=float, default=0.05)
    p.add_argument("--slack", type=float, default=0.0, help="stderr a round's Acc@t2 may fall by")
    return p


def main() -> None:
    sys.exit(run(parser().parse_args()))


if __name__ == "__main__":
    main()

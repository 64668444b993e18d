"""Does the loop learn? Rounds on the learnable world (or any choice-kind problems file), beside a control.

    python bench/learning.py                        # 3 rounds on the world, with the shuffled-verifier control
    python bench/learning.py --sweep 10             # 10 runs of new (world seed, model-build seed) pairs
    python bench/learning.py --fault unfixed-dplus  # an injected fault: the bench must report targets=missed
    python bench/learning.py --problems my.jsonl    # any problems file of the `choice` kind, same model and loop

The world (problems/world.py, the `paired` rule by default) is split by the usual question-level split into a
generation pool and held-out problems; `configs/world.json` is the loop's config (the format-pretrained `tiny-world`
model, built from `--build-seed`, full fine-tuning). Round 0 is the model before any training; the learning lineage
and the control then run side by side, each in its own process. The control runs the same rounds with
`generate.verdicts: shuffled`: the verifier's verdicts are permuted across the shard, so the loop keeps its share of
"fixes" but loses what they mean. Both train on the same number of D+ records a round (`train.max_records`,
`--records`), so the control is matched in data size and optimiser steps; every round line prints both. Evaluation
always uses the true verifier.

Each round's line also splits the retries of problems wrong at trial 1: `retry_changed`, how often the retry
answered differently, and `right_when_changed`, how often a changed answer was right (1/3 at chance with four
options; above it, the rule is being learnt).

The first line names the CPU and torch's kernel ISA: float results differ in their last bits between CPUs, and a
learning result counts only if it holds on any of them. `--sweep N` is how to check that on one machine: another
model-build seed is the nearest stand-in for another CPU's rounding. It runs N lineages (no control) of world seed
and build seed `--sweep-start + i` (seeds 0-2 were used while developing the recipe; the default start is 100),
prints one line a run and `sweep_runs=<n> sweep_learnt=<k> ...`, and exits 1 unless at least 9 in 10 learnt.

Otherwise prints one line per round, the control's rounds, whether the targets were met, and last
`learning_gain=<acc@t2 last round - round 0> gain_stderr=<paired> control_gain=<same, control> seconds=<wall>`;
writes the curve as a PNG. Exits 1 when a target is missed: gain >= --min-gain and >= --min-z stderr, no round's
Acc@t2 below the previous one's beyond --slack stderr, control gain <= --max-control.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

# --fault name -> the generate settings that inject it into the learning lineage (reflectevo/config.py).
FAULTS = {"unfixed-dplus": {"verdicts": "inverted"}, "stale-weights": {"weights": "one-round-old"}}


def machine_line() -> str:
    """The CPU model and the kernels torch picks on it: what a reader needs to tell two machines' figures apart."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split())
    except (OSError, StopIteration):
        flags = set()
    extras = ",".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "none"
    return (f"cpu={model!r} torch_isa={torch.backends.cpu.get_cpu_capability()} bf16_flags={extras} "
            f"torch={torch.__version__} threads={torch.get_num_threads()}")


# A model's own loop settings where --config names none (prompt lengths, sampling, LoRA for a pretrained model).
MODEL_CONFIGS = {"smollm2-135m": ROOT / "configs" / "smollm2-learning.json"}


def write_configs(args, problems: str, pool_fraction: float, run_dir: str, control: bool) -> list[str]:
    """The learning lineage's config for this problems file and model, and the control's, which differs only in
    its verdicts; a --fault changes the learning lineage alone."""
    config = args.config or MODEL_CONFIGS.get(args.model, ROOT / "configs" / "world.json")
    base = json.loads(Path(config).read_text())
    base.update(run_dir=run_dir, sources=[{"task": Path(problems).stem, "path": problems}],
                eval_fraction=1 - pool_fraction)
    if args.model:
        base["model"] = args.model
    elif base["model"] == "tiny-world" and args.build_seed:
        base["model"] = f"tiny-world@{args.build_seed}"
    if args.records:
        base["train"] = {**base.get("train", {}), "max_records": args.records}
    lineages = [("learning", FAULTS.get(args.fault, {}))] + ([("control", {"verdicts": "shuffled"})] if control else [])
    paths = []
    for name, generate in lineages:
        cfg = {**base, "name": name, "generate": {**base.get("generate", {}), **generate}}
        path = Path(run_dir) / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=1))
        paths.append(str(path))
    return paths


def round_data(config: str, rounds: int) -> dict[int, dict[str, float]]:
    """{round: D+ rows curated, records trained on, optimiser steps} from a lineage's round manifests."""
    from reflectevo.config import load_config
    from stages.prepare import read_manifest

    cfg, out = load_config(config, {}), {0: {"dplus": 0, "trained": 0, "steps": 0}}
    for r in range(1, rounds + 1):
        if (m := read_manifest(cfg, r)) is None:
            continue
        metrics = m.adapter.metrics if m.adapter else {}
        out[r] = {"dplus": m.datasets["dplus"].rows if "dplus" in m.datasets else 0,
                  "trained": m.adapter.rows if m.adapter else 0,
                  "steps": sum(v for k, v in metrics.items() if k.split("/")[-1] == "steps")}
    return out


def measure(args, world_seed: int | None = None) -> dict:
    """Run the learning curve (and the control) and return every figure the bench prints."""
    from flows.learning import learning_curve
    from problems.world import write_world
    from stages.report import curve_point, paired_gain, plot_curves, retry_breakdown

    start = time.perf_counter()
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="reflectevo-learning-")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = args.seed if world_seed is None else world_seed
    if args.problems:
        problems, pool_fraction = str(Path(args.problems).resolve()), 1 - args.eval_fraction
    else:
        problems = str(write_world(run_dir / f"world-{args.rule}-{seed}.jsonl", args.rule, args.pool + args.eval,
                                   seed, high=args.high))
        pool_fraction = args.pool / (args.pool + args.eval)
    configs = write_configs(args, problems, pool_fraction, str(run_dir), not args.no_control)
    curves = learning_curve(configs, args.rounds)
    data = {Path(c).stem: round_data(c, args.rounds) for c in configs}
    points = {name: {r: {**curve_point(p), **retry_breakdown(p), **data[name].get(r, {})} for r, p in curve.items()}
              for name, curve in curves.items()}
    gains = {name: paired_gain(curve[0], curve[max(curve)]) for name, curve in curves.items()}
    if args.png:
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


def round_line(prefix: str, r: int, p: dict) -> str:
    noreflect = f" acc@t2_noreflect={p['acc@t2_noreflect']:.3f}" if "acc@t2_noreflect" in p else ""
    return (f"{prefix}round={r} acc@t1={p['acc@t1']:.3f} acc@t2={p['acc@t2']:.3f} "
            f"acc@t2_stderr={p['acc@t2_stderr']:.3f}{noreflect} n={int(p['n'])} dplus={p.get('dplus', 0)} "
            f"trained_records={p.get('trained', 0)} steps={p.get('steps', 0):.0f} retry_changed={p['changed']:.3f} "
            f"right_when_changed={p['right_when_changed']:.3f}")


def run(args) -> int:
    print(machine_line(), flush=True)
    result = measure(args)
    for name, prefix in (("learning", ""), ("control", "control ")):
        for r, p in sorted(result["points"].get(name, {}).items()):
            print(round_line(prefix, r, p))
    missed = missed_targets(result, args)
    if "control" in result["points"]:
        trained = [(result["points"]["learning"][r]["trained"], p["trained"])
                   for r, p in result["points"]["control"].items() if r in result["points"]["learning"]]
        print(f"control_matched={'yes' if all(a == b for a, b in trained) else 'no'} "
              f"trained_records_by_round={' '.join(f'{a}/{b}' for a, b in trained[1:])}")
    print("targets=met" if not missed else "targets=missed: " + "; ".join(missed))
    gain, gain_err = result["gains"]["learning"]
    control = result["gains"].get("control", (float("nan"), float("nan")))[0]
    print(f"learning_gain={gain:.3f} gain_stderr={gain_err:.3f} control_gain={control:.3f} "
          f"seconds={result['seconds']:.0f}")
    return 1 if missed else 0


def sweep(args) -> int:
    """N lineages of fresh (world seed, build seed) pairs; one line each, then how many learnt."""
    from concurrent.futures import ProcessPoolExecutor

    from models.loading import resolve_model
    from tasks.concurrency import slot_count

    print(machine_line(), flush=True)
    seeds = range(args.sweep_start, args.sweep_start + args.sweep)
    if not args.model:  # the models first, as many at once as there are engine slots (minutes each on one core)
        with ProcessPoolExecutor(max_workers=slot_count()) as pool:
            list(pool.map(resolve_model, [f"tiny-world@{seed}" for seed in seeds]))
    args.no_control, args.png, learnt, base_out = True, "", 0, args.out
    for i, seed in enumerate(seeds):
        args.build_seed = seed
        args.out = str(Path(base_out) / f"run-{seed}") if base_out else None
        result = measure(args, world_seed=seed)
        missed = missed_targets(result, args)
        learnt += not missed
        points, (gain, err) = result["points"]["learning"], result["gains"]["learning"]
        curve = " ".join(f"{points[r]['acc@t2']:.3f}" for r in sorted(points))
        dplus = " ".join(str(points[r]["dplus"]) for r in sorted(points)[1:])
        print(f"sweep_run={i} world_seed={seed} build_seed={seed} acc@t2_by_round={curve} dplus_by_round={dplus} "
              f"gain={gain:.3f} gain_stderr={err:.3f} learnt={'yes' if not missed else 'no'} "
              f"seconds={result['seconds']:.0f}" + ("" if not missed else f" missed={'; '.join(missed)}"), flush=True)
    ok = learnt * 10 >= 9 * args.sweep
    print(f"sweep_runs={args.sweep} sweep_learnt={learnt} seeds={args.sweep_start}-{args.sweep_start + args.sweep - 1} "
          f"targets={'met' if ok else 'missed'}")
    return 0 if ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--config", help="the loop's config (default: configs/world.json, or the --model's own)")
    p.add_argument("--model", help="another model than the config's (e.g. smollm2-135m, with its own --config)")
    p.add_argument("--build-seed", type=int, default=0, help="tiny-world's build seed (tiny-world@<seed>)")
    p.add_argument("--problems", help="a choice-kind problems file instead of the world")
    p.add_argument("--eval-fraction", type=float, default=1 / 3, help="held-out share of --problems")
    p.add_argument("--rule", default="paired", help="the world's rule (problems/world.py)")
    p.add_argument("--pool", type=int, default=600, help="world problems in the generation pool")
    p.add_argument("--eval", type=int, default=300, help="world problems held out")
    p.add_argument("--seed", type=int, default=0, help="the world's seed")
    p.add_argument("--high", type=int, default=29, help="the world's largest option value (the smallest is 10)")
    p.add_argument("--records", type=int, default=200, help="D+ records each lineage trains on a round "
                   "(train.max_records; 0: all), the same for the control")
    p.add_argument("--fault", choices=sorted(FAULTS), help="inject a fault the bench must catch")
    p.add_argument("--sweep", type=int, default=0, help="run this many (world seed, build seed) pairs instead")
    p.add_argument("--sweep-start", type=int, default=100, help="the sweep's first seed")
    p.add_argument("--no-control", action="store_true", help="skip the shuffled-verifier control")
    p.add_argument("--out", help="run folder (default: a new temp folder)")
    p.add_argument("--png", default=str(ROOT / "docs" / "learning.png"), help="the curve's PNG ('' for none)")
    p.add_argument("--min-gain", type=float, default=0.25)
    p.add_argument("--min-z", type=float, default=4.0)
    p.add_argument("--max-control", type=float, default=0.05)
    p.add_argument("--slack", type=float, default=2.0, help="stderr a round's Acc@t2 may fall by (noise)")
    return p


def main() -> None:
    args = parser().parse_args()
    sys.exit(sweep(args) if args.sweep else run(args))


if __name__ == "__main__":
    main()

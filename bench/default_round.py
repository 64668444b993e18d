"""The embedded default round, measured: what README command 1 does on SmolLM2-135M, with and without worked examples.

    python bench/default_round.py                 # fewshot 0 and 3, one default round each
    python bench/default_round.py --fewshot 3     # one
    REFLECTEVO_VLLM_PYTHON=.venv-vllm/bin/python python bench/default_round.py --fewshot 3   # README command 1's round
    python bench/default_round.py --fewshot 3 --engine transformers                         # the same, transformers

Prints one line per setting: the first-trial `Finish[...]` rate and accuracy on the generation pool, the share of
reflections whose second trial was verified correct (fix rate), D+ rows, whether an adapter was trained, held-out
Acc@t1 / Acc@t2 / Acc@t2 without reflection with stderr, the round's wall time, and the generation stage's
throughput: `generation_tok_s`, the tokens it generated (first trials, reflections, second trials) over the seconds
its shards spent in those three steps (verification included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(fewshot: int, run_dir: Path, model: str, engine: str) -> str:
    from models.engines import resolve_engine_name
    from reflectevo.config import EngineConfig
    from reflectevo.schema import RoundManifest, Trajectory
    from reflectevo.shards import read_records
    from stages.report import pm

    config = run_dir / f"fewshot-{fewshot}.json"
    config.write_text(json.dumps({"generate": {"fewshot": fewshot}}))
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "reflectevo"), "evolve", "--model", model, "--engine", engine,
                    "--config", str(config), "--run-dir", str(run_dir), "--name", f"fewshot-{fewshot}"],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    manifest = RoundManifest.model_validate_json((run_dir / f"fewshot-{fewshot}" / "round-1" / "manifest.json").read_text())
    trajectories = [t for s in manifest.trajectories for t in read_records(s.path, Trajectory)]
    reflections = [r for t in trajectories for r in t.reflections]
    finish = sum("Finish[" in t.first.output for t in trajectories) / len(trajectories)
    acc1 = sum(t.first.status == "correct" for t in trajectories) / len(trajectories)
    fixes = sum(r.second.status == "correct" for r in reflections)
    m = manifest.metrics["all"]
    tokens = sum(s.counts.get("output_tokens", 0) for s in manifest.trajectories)
    gen_s = sum(s.timings.get(k, 0.0) for s in manifest.trajectories
                for k in ("first_trial_s", "reflection_s", "second_trial_s"))
    return (f"fewshot={fewshot} pool={len(trajectories)} finish_rate={finish:.3f} pool_acc@t1={acc1:.3f} "
            f"reflections={len(reflections)} fix_rate={fixes / max(len(reflections), 1):.3f} "
            f"dplus={manifest.datasets['dplus'].rows} adapter={'yes' if manifest.adapter and manifest.adapter.path else 'no'} "
            f"heldout_acc@t1={pm(m, 'acc@t1')} heldout_acc@t2={pm(m, 'acc@t2')} "
            f"heldout_acc@t2_noreflect={pm(m, 'acc@t2_noreflect')} n={int(m['n'])} seconds={seconds:.0f} "
            f"engine={resolve_engine_name(EngineConfig(name=engine))} generated_tokens={tokens} "
            f"generation_s={gen_s:.0f} "
            f"generation_tok_s={tokens / max(gen_s, 1e-9):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fewshot", type=int, action="append", help="worked examples (repeatable; default 0 and 3)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engine", default="auto",
                        help="auto (vLLM where importable or $REFLECTEVO_VLLM_PYTHON is set), transformers or vllm")
    parser.add_argument("--out", help="run folder (default: a new temp folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="reflectevo-default-")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for fewshot in args.fewshot or [0, 3]:
        print(measure(fewshot, run_dir, args.model, args.engine), flush=True)


if __name__ == "__main__":
    main()

"""Generation throughput: our generation stage against the bare engine call, and vLLM against transformers.

On the same first-trial prompts (built-in problems rendered with `reasoning_messages`) and the same greedy
sampling, each engine is timed three ways, after a burn-in call, by the fastest of --iters calls:
  pipeline    `attempt_batch`: the engine call plus answer extraction and verification, as a round runs it;
  engine      the engine's `generate`;
  raw_engine  the bare library call: one padded `model.generate` batch (transformers) or `LLM.generate` (vLLM).
Tokens are generated tokens up to EOS. Prints one line per engine,
  generation_ratio=<pipeline/raw> pipeline=<a> tok/s raw_engine=<b> tok/s engine=<name> device=<cpu|cuda>
and with --engine both,
  engine_ratio=<vllm/transformers> vllm=<a> tok/s transformers=<b> tok/s device=<cpu|cuda>

    python bench/generation.py --model tiny --engine transformers
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Python puts bench/ first on sys.path, where bench/verifiers.py would shadow the `verifiers` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])


def measure(fns: dict, iters: int) -> dict[str, float]:
    """Tokens per second of each fn (which returns its token count): one burn-in call each, then `iters` rounds
    that call them in turn; each keeps its fastest round, since other processes only ever add time."""
    for fn in fns.values():
        fn()
    best = {name: (float("inf"), 0) for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t = time.perf_counter()
            tokens = fn()
            best[name] = min(best[name], (time.perf_counter() - t, tokens))
    return {name: tokens / seconds for name, (seconds, tokens) in best.items()}


def raw_transformers(engine, prompts, sampling) -> int:
    """One left-padded batch through `model.generate`, with the engine's model and tokenizer."""
    import torch

    tok = engine.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(engine.device)
    with torch.inference_mode():
        out = engine.model.generate(**enc, max_new_tokens=sampling.max_tokens, do_sample=False, temperature=None,
                                    top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
    rows = out[:, enc["input_ids"].shape[1]:].tolist()
    return sum(next((j for j, t in enumerate(r) if t in engine.eos_ids), len(r)) for r in rows)


def bare_vllm(model_path: str, config, prompts, sampling):
    """A bare `LLM.generate` call on an `LLM` built in this process with the engine's own settings."""
    from vllm import SamplingParams

    from models.engines.vllm import VLLMRunner

    llm = VLLMRunner(model_path, None, config.model_dump_json()).llm
    params = SamplingParams(temperature=0.0, max_tokens=sampling.max_tokens)
    return lambda: sum(len(c.token_ids) - (c.finish_reason == "stop")
                       for o in llm.generate(prompts, params, use_tqdm=False) for c in o.outputs)


def bench_engine(name: str, model_path: str, problems, sampling, iters: int) -> tuple[float, str]:
    """Prints the generation_ratio line for one engine; returns its engine tok/s and device."""
    import torch

    from models.engines import EngineConfig, load_engine, release_engines
    from models.prompts import reasoning_messages
    from reflectevo.generate import attempt_batch

    config = EngineConfig(name=name)
    engine = load_engine(config.model_dump_json(), model_path, None)
    prompts = [engine.render(reasoning_messages(p)) for p in problems]
    fns = {"pipeline": lambda: sum(a.output_tokens for a in attempt_batch(engine, problems, prompts, sampling, 1)),
           "engine": lambda: sum(c.tokens for cs in engine.generate(prompts, sampling) for c in cs)}
    if name == "transformers":
        device = engine.device
        fns["raw"] = lambda: raw_transformers(engine, prompts, sampling)
        tok_s = measure(fns, iters)
    else:
        # One vLLM at a time: two would split the GPU's memory, and on a small CPU their threads and the
        # verifier processes crowd each other out. So our engine's worker ends before the bare LLM starts.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tok_s = measure(fns, iters)
        release_engines()
        tok_s |= measure({"raw": bare_vllm(model_path, config, prompts, sampling)}, iters)
    release_engines()
    del fns, engine
    torch.cuda.empty_cache()  # the next engine measures the GPU memory that is free
    pipeline, raw = tok_s["pipeline"], tok_s["raw"]
    print(f"generation_ratio={pipeline / raw:.3f} pipeline={pipeline:.0f} tok/s raw_engine={raw:.0f} tok/s "
          f"engine={name} device={device}", flush=True)
    return tok_s["engine"], device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, smollm2-135m or a local checkpoint path")
    parser.add_argument("--engine", default="transformers", choices=["transformers", "vllm", "both"])
    parser.add_argument("--n-prompts", type=int, default=32, help="half choice, half math problems")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5, help="timed rounds after the burn-in; the fastest counts")
    args = parser.parse_args()

    from models.engines import SamplingConfig
    from models.loading import resolve_model
    from reflectevo.problems import ProblemSource, load_problems

    half = args.n_prompts // 2
    problems = (load_problems(ProblemSource(task="choice"))[: args.n_prompts - half]
                + load_problems(ProblemSource(task="math"))[:half])
    sampling = SamplingConfig(max_tokens=args.max_tokens)
    model_path = resolve_model(args.model)
    names = ["transformers", "vllm"] if args.engine == "both" else [args.engine]
    results = {name: bench_engine(name, model_path, problems, sampling, args.iters) for name in names}
    if args.engine == "both":
        (v, device), (t, _) = results["vllm"], results["transformers"]
        print(f"engine_ratio={v / t:.3f} vllm={v:.0f} tok/s transformers={t:.0f} tok/s device={device}", flush=True)


if __name__ == "__main__":
    main()

"""Generation throughput: our generation stage against the bare engine call, and vLLM against transformers.

On the same first-trial prompts (built-in problems rendered with `reasoning_messages`) and the same sampling
(greedy by default, as a round's trials; `--samples 2 --temperature 0.8` as its reflections), each engine is timed
three ways, after a burn-in call, by the fastest of --iters calls:
  pipeline     `attempt_batch`: the engine call plus answer extraction and verification, as a round runs it;
  engine_call  the engine's `generate` (for vLLM: through its worker process);
  raw_engine   the bare library call: one padded `model.generate` batch (transformers; what our engine called
               before it had its own decode loop) or `LLM.generate` on an
               `LLM` built in this process (vLLM). vLLM's two sides cannot run at once, so their phases
               alternate: ours, bare, ours, bare.
Tokens are generated tokens up to EOS; with --samples above 1, pipeline is the engine call. Prints one line per
engine,
  generation_ratio=<pipeline/raw> pipeline=<a> tok/s engine_call=<b> tok/s raw_engine=<c> tok/s engine=<name> device=<cpu|cuda>
  roofline_fraction=<f> engine_call=<b> tok/s flop_per_token=<F> peak_matmul_gflops=<P> threads=<t> ...
where roofline_fraction = engine_call tok/s x F / P: F is 2 x the weights of every matmul a generated token goes
through (all linear layers and the LM head; attention over the context and the prompt's prefill not counted), P the
matmul FLOP/s of this machine in the engine's dtype (bf16 for SmolLM2 on a CPU with AMX, float32 where it has none),
measured in the same run with torch, a 2048^3 matmul at the engine's thread count (on a CPU also at 1 thread).
And with --engine both,
  engine_ratio=<vllm/transformers> vllm=<a> tok/s transformers=<b> tok/s device=<cpu|cuda>

The default model is the application's (SmolLM2-135M-Instruct). On `--model tiny` a whole call takes a few
hundred milliseconds, so the milliseconds that math-verify spends per answer show as a lower generation_ratio.

    python bench/generation.py --engine transformers
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Python puts bench/ first on sys.path, where bench/verifiers.py would shadow the `verifiers` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])


PHASES = 2  # vLLM: alternating phases of our engine and the bare LLM


def measure(fns: dict, iters: int, best: dict | None = None) -> dict[str, float]:
    """Tokens per second of each fn (which returns its token count): one burn-in call each, then `iters` rounds
    that call them in turn; each keeps its fastest round (also against `best`, from an earlier phase), since
    other processes only ever add time."""
    for fn in fns.values():
        fn()
    best = dict(best or {})
    for _ in range(iters):
        for name, fn in fns.items():
            t = time.perf_counter()
            tokens = fn()
            best[name] = max(best.get(name, 0.0), tokens / (time.perf_counter() - t))
    return best


def raw_transformers(engine, prompts, sampling) -> int:
    """One left-padded batch through `model.generate`, with the engine's model and tokenizer."""
    import torch

    tok = engine.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(engine.device)
    decoding = (dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
                if sampling.temperature > 0 else dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    with torch.inference_mode():
        out = engine.model.generate(**enc, max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                                    pad_token_id=tok.pad_token_id, **decoding)
    rows = out[:, enc["input_ids"].shape[1]:].tolist()
    return sum(next((j for j, t in enumerate(r) if t in engine.eos_ids), len(r)) for r in rows)


def bare_vllm(model_path: str, config, prompts, sampling, iters: int, best: dict) -> dict[str, float]:
    """Times a bare `LLM.generate` call on an `LLM` built in this process with the engine's own settings, then
    shuts that `LLM` down."""
    from vllm import SamplingParams

    from models.engines.vllm import VLLMRunner

    runner = VLLMRunner(model_path, None, config.model_dump_json())
    # The token ids our engine sends: the rendered chat template already holds the special tokens.
    same_tokens = {"add_special_tokens": False}
    params = SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_tokens)
    try:
        return measure({"raw": lambda: sum(len(c.token_ids) - (c.finish_reason == "stop")
                                           for o in runner.llm.generate(prompts, params, use_tqdm=False,
                                                                        tokenization_kwargs=same_tokens)
                                           for c in o.outputs)}, iters, best)
    finally:
        runner.close()


def peak_matmul_flops(device: str, dtype, threads: int | None = None, size: int = 2048, iters: int = 5) -> float:
    """FLOP/s of a square matmul, the fastest of `iters` after a burn-in, at `threads` torch threads (CPU)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        best = float("inf")
        for i in range(iters + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - t)
        return 2 * size**3 / best
    finally:
        torch.set_num_threads(before)


def flop_per_token(model) -> int:
    """2 x the weights of the linear layers and LM head: the matmul FLOP one generated token costs."""
    import torch

    return 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def roofline(engine, tok_s: float) -> None:
    import torch

    threads = torch.get_num_threads()
    dtype = next(engine.model.parameters()).dtype
    peak = peak_matmul_flops(engine.device, dtype)
    flop = flop_per_token(engine.model)
    line = (f"roofline_fraction={tok_s * flop / peak:.3f} engine_call={tok_s:.0f} tok/s flop_per_token={flop / 1e9:.3f}G "
            f"peak_matmul_gflops={peak / 1e9:.1f} threads={threads} dtype={str(dtype).removeprefix('torch.')}")
    if engine.device == "cpu":
        line += f" peak_matmul_gflops_1_thread={peak_matmul_flops('cpu', dtype, 1) / 1e9:.1f} cpus={os.cpu_count()}"
    print(line, flush=True)


def bench_engine(name: str, model_path: str, problems, sampling, iters: int, fewshot: int = 0) -> tuple[float, str]:
    """Prints the generation_ratio line for one engine; returns its engine tok/s and device."""
    import torch

    from models.engines import load_engine, release_engines
    from models.prompts import reasoning_messages
    from reflectevo.config import EngineConfig
    from stages.trial import attempt_batch

    config = EngineConfig(name=name)
    engine = load_engine(config, model_path, None)
    prompts = [engine.render(reasoning_messages(p, fewshot) if fewshot else reasoning_messages(p)) for p in problems]
    fns = {"engine": lambda: sum(c.tokens for cs in engine.generate(prompts, sampling) for c in cs)}
    if sampling.n == 1:  # a trial: what the round's generation step runs around the engine call
        fns["pipeline"] = lambda: sum(a.output_tokens for a in attempt_batch(engine, problems, prompts, sampling, 1))
    if name == "transformers":
        device = engine.device
        fns["raw"] = lambda: raw_transformers(engine, prompts, sampling)
        tok_s = measure(fns, iters)
        roofline(engine, tok_s["engine"])
    else:
        # One vLLM at a time: two would split the GPU's memory, and on a small CPU their threads and the
        # verifier processes crowd each other out. So our engine's worker ends before the bare LLM starts, and
        # the phases alternate (ours, bare, ours, bare), so that a slow spell of the machine hits both sides.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tok_s: dict[str, float] = {}
        for phase in range(PHASES):
            if phase:
                engine = load_engine(config, model_path, None)
            tok_s = measure(fns, iters, tok_s)
            release_engines()
            tok_s = bare_vllm(model_path, config, prompts, sampling, iters, tok_s)
    release_engines()
    del fns, engine
    torch.cuda.empty_cache()  # the next engine measures the GPU memory that is free
    pipeline, raw = tok_s.get("pipeline", tok_s["engine"]), tok_s["raw"]
    print(f"generation_ratio={pipeline / raw:.3f} pipeline={pipeline:.0f} tok/s engine_call={tok_s['engine']:.0f} tok/s "
          f"raw_engine={raw:.0f} tok/s engine={name} device={device}", flush=True)
    return tok_s["engine"], device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny or a local checkpoint path")
    parser.add_argument("--engine", default="transformers", choices=["transformers", "vllm", "both"])
    parser.add_argument("--n-prompts", type=int, default=32, help="half choice, half math problems")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--fewshot", type=int, default=0, help="worked examples in each prompt, as a round's trials")
    parser.add_argument("--samples", type=int, default=1, help="completions per prompt (a round's reflections: 2)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (trials); reflections: 0.8")
    parser.add_argument("--iters", type=int, default=3,
                        help="timed rounds per phase after the burn-in; the fastest counts")
    args = parser.parse_args()

    from models.loading import resolve_model
    from problems import load_problems
    from reflectevo.config import ProblemSource, SamplingConfig

    half = args.n_prompts // 2
    problems = (load_problems(ProblemSource(task="choice"))[: args.n_prompts - half]
                + load_problems(ProblemSource(task="math"))[:half])
    sampling = SamplingConfig(max_tokens=args.max_tokens, n=args.samples, temperature=args.temperature)
    model_path = resolve_model(args.model)
    names = ["transformers", "vllm"] if args.engine == "both" else [args.engine]
    results = {name: bench_engine(name, model_path, problems, sampling, args.iters, args.fewshot) for name in names}
    if args.engine == "both":
        (v, device), (t, _) = results["vllm"], results["transformers"]
        print(f"engine_ratio={v / t:.3f} vllm={v:.0f} tok/s transformers={t:.0f} tok/s device={device}", flush=True)


if __name__ == "__main__":
    main()

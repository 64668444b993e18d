"""The learning-curve flow: does the loop make the model better, beside a control that should not learn?

Round 0 is the model before any training, evaluated on the held-out problems the rounds use; then each lineage
config runs `rounds` ordinary evolution rounds. bench/learning.py passes two configs that differ only in
`generate.verdicts` (the verifier's, and the shuffled control), so a gain the control shares is not learning.
"""

from __future__ import annotations

from prefect import flow

from flows.evolve import evaluate_flow, evolve
from reflectevo.config import load_config
from stages.prepare import model_for_round, read_manifest
from tasks.generation import prepare_problems_task


@flow(name="learning-curve")
def learning_curve(configs: list[str], rounds: int = 3) -> dict[str, dict[int, str]]:
    """{lineage name: {round: evaluation results path}}, round 0 (before training) included in each.

    All configs must share the model and the problems (so round 0 is the same for each): it is evaluated once,
    under the first config.
    """
    first = load_config(configs[0], {})
    model, model_path = model_for_round(first, 0)
    prepared = prepare_problems_task(first, 0)
    round0, _ = evaluate_flow(first, 0, prepared.eval_path, model, model_path)
    curves = {}
    for path in configs:
        cfg = load_config(path, {})
        evolve(rounds=rounds, config=path)
        done = {r: m.metrics_path for r in range(1, rounds + 1) if (m := read_manifest(cfg, r)) and m.metrics_path}
        curves[cfg.name] = {0: round0, **done}
    return curves

"""The learning-curve flow: does the loop make the model better, beside a control that should not learn?

Round 0 is the model before any training, evaluated on the held-out problems the rounds use; then each lineage
config runs `rounds` ordinary evolution rounds. bench/learning.py passes two configs that differ only in
`generate.verdicts` (the verifier's, and the shuffled control), so a gain the control shares is not learning.

The lineages are independent, so they run side by side, each in its own process (an engine and a trainer hold
process-wide state): as many at once as the machine has engine slots (`REFLECTEVO_ENGINE_SLOTS`,
tasks/concurrency.py), one after the other by default.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

from flows.evolve import evaluate_flow
from reflectevo.config import load_config
from stages.prepare import model_for_round, read_manifest
from tasks.concurrency import slot_count
from tasks.generation import prepare_problems_task


@task(name="lineage", task_run_name="lineage-{config}")
def lineage(config: str, rounds: int) -> dict[int, str]:
    """Run the config's evolution rounds (a flow, in this task's process); {round: evaluation results path}."""
    # Imported here, in the worker: a task's function is sent by value, and a flow it names would be too, with
    # globals that lack the names its parameters' annotations need to validate.
    from flows.evolve import evolve

    evolve(rounds=rounds, config=config)
    cfg = load_config(config, {})
    return {r: m.metrics_path for r in range(1, rounds + 1) if (m := read_manifest(cfg, r)) and m.metrics_path}


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
    with ProcessPoolTaskRunner(max_workers=min(slot_count(), len(configs))) as runner:
        futures = {load_config(path, {}).name: runner.submit(lineage, {"config": path, "rounds": rounds})
                   for path in configs}
        return {name: {0: round0, **future.result()} for name, future in futures.items()}

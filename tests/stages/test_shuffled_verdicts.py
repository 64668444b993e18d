"""The shuffled-verifier control: same share judged correct, its link to the answers cut; evaluation untouched."""

from __future__ import annotations

from reflectevo.config import GenerateConfig
from reflectevo.schema import Problem
from stages.generate import run_round_steps


def problems(n: int) -> list[Problem]:
    return [Problem(id=f"q{i}", task="t", kind="choice", question=f"Q{i}?", answer="ABCD"[i % 4],
                    choices=["w", "x", "y", "z"]) for i in range(n)]


def reply(prompt: str, sample: int) -> str:
    """Always answers A; a reflection names B; a retry follows its reflection."""
    if "Reflect on the attempt" in prompt:
        return "try option (B)."
    if "Your reflection on that attempt" in prompt:
        return "Finish[B]"
    return "Finish[A]"


def test_shuffled_verdicts_keep_the_count_and_break_the_link(scripted_engine):
    ps = problems(40)
    truth, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1), 1, 0)
    shuffled, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1,
                                                                             verdicts="shuffled"), 1, 0)
    judged = [t.first.status == "correct" for t in truth]
    moved = [t.first.status == "correct" for t in shuffled]
    assert sum(judged) == sum(moved) == 10  # the 10 problems whose gold is A
    assert judged != moved
    assert [t.first.output for t in truth] == [t.first.output for t in shuffled]  # outputs are the model's own
    # the problems judged wrong are reflected on, whatever their true verdict
    assert [bool(t.reflections) for t in shuffled] == [not m for m in moved]


def test_the_verifier_is_the_default():
    assert GenerateConfig().verdicts == "verifier"


def test_inverted_verdicts_flip_the_second_trials_only(scripted_engine):
    """The injected fault of bench/learning.py --fault unfixed-dplus: D+ gets the reflections that did not fix."""
    ps = problems(40)
    truth, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1), 1, 0)
    inverted, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1,
                                                                             verdicts="inverted"), 1, 0)
    assert [t.first.status for t in inverted] == [t.first.status for t in truth]
    seconds = [(t.reflections[0].second.status, u.reflections[0].second.status)
               for t, u in zip(truth, inverted) if t.reflections]
    assert seconds and {pair for pair in seconds} == {("correct", "wrong"), ("wrong", "correct")}


def test_stale_weights_start_a_round_from_the_adapter_one_round_older(tmp_path):
    from reflectevo.config import RoundConfig
    from reflectevo.schema import AdapterManifest, ModelRef, RoundManifest
    from stages.prepare import latest_adapter, write_manifest

    cfg = RoundConfig(model="tiny", run_dir=str(tmp_path), name="l")
    for r in (1, 2):
        write_manifest(cfg, RoundManifest(round=r, run_dir=str(cfg.layout(r).folder),
                                          model=ModelRef(base="tiny", base_sha256="0"), config=cfg.model_dump(),
                                          adapter=AdapterManifest(path=f"adapter-{r}")))
    assert latest_adapter(cfg, 3) == "adapter-2"
    stale = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"weights": "one-round-old"})})
    assert latest_adapter(stale, 3) == "adapter-1" and latest_adapter(stale, 2) is None

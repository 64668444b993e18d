from problems import load_problems, split_pool_eval
from reflectevo.config import ProblemSource


def test_split_is_exact_disjoint_and_independent_of_order():
    problems = load_problems(ProblemSource(task="math"))
    pool, held = split_pool_eval(problems, 0.25, seed=0)
    assert len(held) == 16 and len(pool) == 48
    assert not {p.id for p in pool} & {p.id for p in held}
    pool2, held2 = split_pool_eval(list(reversed(problems)), 0.25, seed=0)
    assert {p.id for p in held2} == {p.id for p in held}
    assert {p.id for p in split_pool_eval(problems, 0.25, seed=1)[1]} != {p.id for p in held}


def test_a_repeated_question_is_dropped_before_the_split_so_none_is_on_both_sides():
    problems = load_problems(ProblemSource(task="math"))
    copies = [p.model_copy(update={"id": f"{p.id}-copy"}) for p in problems]  # same questions under new ids
    pool, held = split_pool_eval(problems + copies, 0.25, seed=0)
    assert len(pool) + len(held) == len(problems)
    assert not {p.question for p in pool} & {p.question for p in held}

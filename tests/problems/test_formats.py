"""Public task formats: each parses its rows into Problems, and a bad row is reported by file, line and field."""

import json
import shutil
from pathlib import Path

import pytest

from problems import BadInput, load_problems
from problems.formats import split_options
from problems.registry import PARSERS
from reflectevo.config import PROBLEM_FORMATS, ProblemSource

SAMPLES = Path(__file__).parents[2] / "problems" / "data" / "samples"


def load(fmt: str, path, **source):
    return load_problems(ProblemSource(task=fmt, format=fmt, path=str(path), **source))


def write_rows(tmp_path, rows, name="rows.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


class TestShippedSamples:
    @pytest.mark.parametrize(
        "fmt, kinds",
        [("logiqa", {"choice"}), ("hendrycks_math", {"math"}), ("mbpp", {"code"}), ("bigbench", {"choice", "freetext"}),
         ("bigbench_free", {"freetext"})],
    )
    def test_each_sample_loads_with_twenty_or_more_problems(self, fmt, kinds):
        problems = load(fmt, SAMPLES / f"{fmt}.jsonl")
        assert len(problems) >= 20
        assert {p.kind for p in problems} == kinds
        assert len({p.id for p in problems}) == len(problems)
        for p in problems:
            assert p.question.strip()
            if p.kind == "choice":
                assert p.answer in "ABCD"[: len(p.choices)] and len(p.choices) >= 2
                assert "\nA. " not in p.question  # options are in `choices`, not in the question

    def test_math_golds_are_verifiable_answers(self):
        from verifiers.math import verify

        for p in load("hendrycks_math", SAMPLES / "hendrycks_math.jsonl"):
            assert verify(p, p.answer).correct, p

    @pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")
    def test_mbpp_reference_solutions_pass_their_tests(self):
        from verifiers import verify_many

        rows = [json.loads(line) for line in (SAMPLES / "mbpp.jsonl").read_text().splitlines()]
        problems = load("mbpp", SAMPLES / "mbpp.jsonl")
        verdicts = verify_many([(p, row["code"]) for p, row in zip(problems, rows)])
        assert [v.status for v in verdicts] == ["correct"] * len(problems), [v.reason for v in verdicts]


class TestLogiQA:
    def test_inline_options_become_choices(self, tmp_path):
        q = "Passage.\nWhich is right?\nA. one\nB. two\nC. three\nD. four"
        [p] = load("logiqa", write_rows(tmp_path, [{"id": 7, "question": q, "answer": "c"}]))
        assert (p.id, p.question, p.choices, p.answer) == ("7", "Passage.\nWhich is right?", ["one", "two", "three", "four"], "C")

    def test_option_continuation_lines_join_their_option(self):
        assert split_options("Q?\nA. first\n   continued\nB. second") == ("Q?", ["first continued", "second"])

    def test_context_query_options_variant(self, tmp_path):
        row = {"context": "Ctx.", "query": "Why?", "options": ["w", "x", "y", "z"], "correct_option": 3}
        [p] = load("logiqa", write_rows(tmp_path, [row]))
        assert (p.question, p.choices, p.answer, p.id) == ("Ctx.\nWhy?", ["w", "x", "y", "z"], "D", "rows-1")


class TestHendrycksMath:
    def test_gold_is_the_last_boxed_with_nested_braces(self, tmp_path):
        row = {"problem": "P", "level": "Level 2", "type": "Algebra",
               "solution": "First \\boxed{1}, finally $\\boxed{\\frac{\\sqrt{3}}{2}}$."}
        [p] = load("hendrycks_math", write_rows(tmp_path, [row]))
        assert (p.answer, p.kind, p.id) == ("\\frac{\\sqrt{3}}{2}", "math", "rows-1")


class TestMBPP:
    def test_question_shows_the_tests_and_the_gold_is_the_tests(self, tmp_path):
        row = {"task_id": 11, "text": "Write f.", "code": "def f(): return 1", "test_setup_code": "",
               "test_list": ["assert f() == 1", "assert f() != 2"], "challenge_test_list": []}
        [p] = load("mbpp", write_rows(tmp_path, [row]))
        assert p.id == "11" and p.kind == "code" and p.answer == ""
        assert p.tests == ["assert f() == 1", "assert f() != 2"]
        assert "assert f() == 1\nassert f() != 2" in p.question


class TestBigBench:
    def test_options_block_becomes_choices(self, tmp_path):
        row = {"question": "Claim: x.\nOptions:\nA. True\nB. False\nC. Neither", "answer": "b", "id": 28}
        [p] = load("bigbench", write_rows(tmp_path, [row]))
        assert (p.question, p.choices, p.answer, p.kind) == ("Claim: x.", ["True", "False", "Neither"], "B", "choice")

    def test_a_question_without_options_is_free_text(self, tmp_path):
        [p] = load("bigbench", write_rows(tmp_path, [{"question": "Passage\n\nQuestion: where?", "answer": "home"}]))
        assert (p.kind, p.answer, p.id) == ("freetext", "home", "rows-1")

    def test_bigbench_free(self, tmp_path):
        [p] = load("bigbench_free", write_rows(tmp_path, [{"question": "Q?", "answer": " on/off switch "}]))
        assert (p.kind, p.answer) == ("freetext", "on/off switch")


class TestMapped:
    def test_columns_map_onto_our_fields_and_an_index_answer_becomes_a_letter(self, tmp_path):
        row = {"uid": "q9", "prompt": "Pick.", "label": 1, "opts": ["a", "b"]}
        columns = {"id": "uid", "question": "prompt", "answer": "label", "choices": "opts"}
        [p] = load("mapped", write_rows(tmp_path, [row]), columns=columns)
        assert (p.id, p.kind, p.answer, p.choices) == ("q9", "choice", "B", ["a", "b"])

    def test_kind_comes_from_the_source_when_it_cannot_be_inferred(self, tmp_path):
        path = write_rows(tmp_path, [{"q": "1+1?", "a": "2"}])
        [p] = load("mapped", path, columns={"question": "q", "answer": "a"}, kind="math")
        assert (p.kind, p.answer) == ("math", "2")
        with pytest.raises(ValueError, match="set `kind`"):
            load("mapped", path, columns={"question": "q", "answer": "a"})

    def test_unknown_target_field_is_named(self, tmp_path):
        with pytest.raises(ValueError, match="'mapped' columns \\['level'\\]"):
            load("mapped", write_rows(tmp_path, [{"q": "x"}]), columns={"question": "q", "level": "l"}, kind="math")


class TestBadInput:
    """Every error names the file, the line and the field, as a user would read it."""

    def check(self, error: BadInput, path: Path, line, field):
        assert (error.file, error.line, error.field) == (str(path), line, field)
        message = str(error)
        assert str(path) in message and (line is None or f"line {line}" in message)
        assert field is None or f"field '{field}'" in message

    def test_bad_json(self, tmp_path):
        path = write_rows(tmp_path, [{"question": "Q?", "answer": "x"}, '{"question": "Q?", "answer": '])
        with pytest.raises(BadInput) as e:
            load("bigbench_free", path)
        self.check(e.value, path, 2, None)
        assert "not valid JSON" in str(e.value)

    @pytest.mark.parametrize(
        "fmt, row, field",
        [
            ("mbpp", {"task_id": 1, "text": "t"}, "test_list"),
            ("hendrycks_math", {"problem": "p"}, "solution"),
            ("logiqa", {"id": 1, "answer": "a"}, "question"),
            ("bigbench_free", {"question": "q"}, "answer"),
        ],
    )
    def test_missing_field(self, tmp_path, fmt, row, field):
        path = write_rows(tmp_path, [row])
        with pytest.raises(BadInput, match="Field required") as e:
            load(fmt, path)
        self.check(e.value, path, 1, field)

    @pytest.mark.parametrize(
        "fmt, row, field",
        [
            ("mbpp", {"task_id": 1, "text": "t", "test_list": "assert f() == 1"}, "test_list"),
            ("mbpp", {"task_id": 1, "text": "t", "test_list": [1, 2]}, "test_list.0"),
            ("bigbench_free", {"question": ["q"], "answer": "a"}, "question"),
            ("logiqa", {"context": "c", "query": "q", "options": ["a", "b"], "correct_option": "first"}, "correct_option"),
        ],
    )
    def test_wrong_type(self, tmp_path, fmt, row, field):
        path = write_rows(tmp_path, [{"question": "fine", "answer": "x", "id": 1}, row] if fmt == "bigbench_free" else [row])
        line = 2 if fmt == "bigbench_free" else 1
        with pytest.raises(BadInput) as e:
            load(fmt, path)
        self.check(e.value, path, line, field)

    @pytest.mark.parametrize(
        "fmt, row, field, message",
        [
            ("logiqa", {"question": "Q\nA. x\nB. y", "answer": "e"}, "answer", "option letter A-B"),
            ("logiqa", {"question": "Q without options", "answer": "a"}, "question", "no option lines"),
            ("logiqa", {"context": "c", "query": "q", "options": ["a", "b"], "correct_option": 5}, "correct_option", "out of range"),
            ("hendrycks_math", {"problem": "p", "solution": "The answer is 5."}, "solution", "no \\\\boxed"),
            ("mbpp", {"task_id": 1, "text": "t", "test_list": []}, "test_list", "at least one assert"),
            ("bigbench", {"question": "Q\nOptions:\nA. yes\nB. no", "answer": "maybe"}, "answer", "option letter"),
        ],
    )
    def test_invalid_value(self, tmp_path, fmt, row, field, message):
        path = write_rows(tmp_path, [row])
        with pytest.raises(BadInput, match=message) as e:
            load(fmt, path)
        self.check(e.value, path, 1, field)

    def test_empty_file(self, tmp_path):
        path = tmp_path / "empty.jsonl"
        path.write_text("\n  \n")
        with pytest.raises(BadInput, match="file is empty") as e:
            load("mbpp", path)
        self.check(e.value, path, None, None)


def test_registry_parses_exactly_the_formats_the_contract_accepts():
    assert sorted(PARSERS) == sorted(PROBLEM_FORMATS)

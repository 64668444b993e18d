"""The `verify` command, run through a tiny typer app the way `reflectevo verify` registers it."""

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from cli.app import guarded
from cli.verify import MAX_LINE_BYTES, verify_command

app = typer.Typer()
app.command("verify")(guarded(verify_command))
app.command("noop")(lambda: None)  # a second command, so `verify` is a subcommand as in the real app

LOGIQA = [
    {"id": 1, "question": "Q1\nA. yes\nB. no", "answer": "a"},
    {"id": 2, "question": "Q2\nA. yes\nB. no", "answer": "b"},
    {"id": 3, "question": "Q3\nA. yes\nB. no", "answer": "b"},
]


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run(tmp_path, task, problems, answers, *extra):
    p, a, out = jsonl(tmp_path / "problems.jsonl", problems), jsonl(tmp_path / "answers.jsonl", answers), tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["verify", "--task", task, "--problems", str(p), "--answers", str(a), "--out", str(out), *extra]
    )
    verdicts = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else None
    return result, verdicts, out


def test_matches_by_id_or_by_position_and_writes_one_verdict_per_answer(tmp_path):
    answers = [{"answer": "A"}, {"id": 3, "answer": "(b)"}, {"answer": "Finish it"}]
    result, verdicts, _ = run(tmp_path, "logiqa", LOGIQA, answers)
    assert result.exit_code == 0, result.output
    assert [(v["id"], v["status"]) for v in verdicts] == [("1", "correct"), ("3", "correct"), ("3", "unparseable")]
    assert set(verdicts[0]) == {"id", "status", "parsed_answer", "reason"}
    assert "correct" in result.output and "2" in result.output


def test_math_task_reads_hendrycks_rows(tmp_path):
    problems = [{"problem": "Half?", "solution": "It is \\boxed{\\dfrac{1}{2}}."}]
    result, verdicts, _ = run(tmp_path, "math", problems, [{"answer": "0.5"}])
    assert result.exit_code == 0, result.output
    assert verdicts[0]["status"] == "correct"


@pytest.mark.parametrize(
    "problems, answers, where",
    [
        (LOGIQA[:2] + ['{"id": 3, "question": '], [{"answer": "A"}], "problems.jsonl, line 3"),
        (LOGIQA, [{"answer": "A"}, {"id": 2}], "answers.jsonl, line 2, field 'answer'"),
        (LOGIQA, [{"answer": 5}], "answers.jsonl, line 1, field 'answer'"),
        (LOGIQA, [{"answer": "A", "id": [1]}], "answers.jsonl, line 1, field 'id'"),
        (LOGIQA, [{"answer": "A", "id": 99}], "answers.jsonl, line 1, field 'id'"),
        ([{"id": 1, "question": "no options", "answer": "a"}], [{"answer": "A"}], "problems.jsonl, line 1, field 'question'"),
        # a repeated id is matched by line; an answer with it on a line whose problem has another id is ambiguous
        ([LOGIQA[0], LOGIQA[1], LOGIQA[0]], [{"answer": "A"}, {"answer": "A", "id": 1}], "answers.jsonl, line 2, field 'id'"),
        ([], [{"answer": "A"}], "problems.jsonl: file is empty"),
        (LOGIQA, [], "answers.jsonl: file is empty"),
        (LOGIQA, ['{"answer": "' + "x" * MAX_LINE_BYTES + '"}'], "answers.jsonl, line 1: line longer than"),
    ],
)
def test_bad_input_exits_2_naming_file_line_and_field(tmp_path, problems, answers, where):
    result, verdicts, _ = run(tmp_path, "logiqa", problems, answers)
    assert result.exit_code == 2
    assert where in " ".join(result.output.split())  # rich may wrap long lines
    assert verdicts is None  # nothing verified, nothing written


def test_skip_bad_sets_bad_rows_aside_and_verifies_the_rest(tmp_path):
    problems = [LOGIQA[0], '{"broken', LOGIQA[2]]
    long_line = '{"answer": "' + "x" * (MAX_LINE_BYTES + 10) + '"}'
    answers = [{"answer": "A"}, {"answer": "B"}, long_line, {"id": 3, "answer": "B"}, {"nope": 1}, "[1, 2]"]
    result, verdicts, out = run(tmp_path, "logiqa", problems, answers, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert [(v["id"], v["status"]) for v in verdicts] == [("1", "correct"), ("3", "correct")]
    rejected = [json.loads(line) for line in (tmp_path / "out.jsonl.rejected.jsonl").read_text().splitlines()]
    assert [(r["file"].rsplit("/", 1)[1], r["line"], r["field"]) for r in rejected] == [
        ("problems.jsonl", 2, None),  # bad JSON
        ("answers.jsonl", 2, None),  # its problem was rejected
        ("answers.jsonl", 3, None),  # over-long line
        ("answers.jsonl", 5, "answer"),  # missing field
        ("answers.jsonl", 6, None),  # not an object
    ]
    assert all(r["reason"] for r in rejected)
    assert "rejected rows" in result.output and "5" in result.output


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")
def test_mbpp_answers_run_in_the_sandbox(tmp_path):
    problems = [{"task_id": 5, "text": "Add.", "test_list": ["assert add(1, 2) == 3"]}]
    answers = [{"id": 5, "answer": "def add(a, b):\n    return a + b"}, {"id": 5, "answer": "def add(a, b):\n    return 0"}]
    result, verdicts, _ = run(tmp_path, "mbpp", problems, answers)
    assert result.exit_code == 0, result.output
    assert [v["status"] for v in verdicts] == ["correct", "wrong"]

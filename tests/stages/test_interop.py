"""Official ReflectEvo format: import, export, round trip, bad input, and imported data training every setting."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from reflectevo.config import CurateConfig, GenerateConfig
from reflectevo.schema import PairRecord, Problem, SFTRecord
from reflectevo.shards import read_records, write_shard
from stages.curate import build_sets
from stages.generate import run_round_steps
from stages.interop import InteropError, export_official, import_official

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = {"dplus": FIXTURES / "official_dplus.jsonl", "dpm": FIXTURES / "official_dpm.jsonl",
            "dpref": FIXTURES / "official_dpref.jsonl"}
DPLUS_KEYS = ["id", "question", "answer", "first_trial_reasoning", "first_trial_answer", "second_trial_reasoning",
              "second_trial_answer", "reflections", "reason_prompt", "reflect_prompt"]
PAIR_KEYS = ["id", "question", "answer", "first_trial_reasoning", "first_trial_answer",
             "second_trial_reasoning_chosen", "second_trial_answer_chosen", "reflection_chosen",
             "second_trial_reasoning_rejected", "second_trial_answer_rejected", "reflection_rejected",
             "reason_prompt", "reflection_prompt"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", ["dplus", "dpm", "dpref"])
def test_import_then_export_reproduces_every_official_field(name, tmp_path):
    manifest = import_official(str(OFFICIAL[name]), str(tmp_path / "data"))
    assert manifest.name == name and manifest.rows == len(lines(OFFICIAL[name]))
    out = tmp_path / f"{name}.jsonl"
    assert export_official(str(tmp_path / "data"), str(out)) == manifest.rows
    original, exported = lines(OFFICIAL[name]), lines(out)
    assert [list(r.items()) for r in exported] == [list(r.items()) for r in original]  # values, types and order
    frame = pd.read_json(out, lines=True)
    assert len(frame) == manifest.rows and list(frame.columns) == list(dict.fromkeys(k for r in original for k in r))


def test_imported_records_map_onto_our_fields(tmp_path):
    dplus = read_records(import_official(str(OFFICIAL["dplus"]), str(tmp_path), task="logic").path, SFTRecord)
    first, official = dplus[0], lines(OFFICIAL["dplus"])[0]
    assert (first.problem_id, first.task, first.reflection, first.reflection_prompt) == (
        "101", "logic", official["reflections"], official["reflect_prompt"])
    assert [first.first_trial_prompt, first.second_trial_prompt] == official["reason_prompt"]
    assert not first.prompts_rendered and dplus[2].answer == "42" and dplus[1].first_trial_answer == ""
    assert len({r.id for r in dplus}) == len(dplus)
    pairs = read_records(import_official(str(OFFICIAL["dpm"]), str(tmp_path)).path, PairRecord)
    assert [p.kind for p in pairs] == ["pm"] * 3 and pairs[0].prompt == lines(OFFICIAL["dpm"])[0]["reflection_prompt"]
    # a pair without reflection_prompt gets our reflection prompt on its failed trial, as a user message
    assert lines(OFFICIAL["dpm"])[2]["first_trial_reasoning"] in pairs[2].prompt and not pairs[2].prompts_rendered


def test_our_datasets_export_to_the_official_fields(scripted_engine, tmp_path):
    def reply(prompt, sample):
        if "Reflect on the attempt" in prompt:
            return ["Consider option C instead.", "Option C fits better.", "Check each step again."][sample]
        if "Your reflection on that attempt" in prompt:
            reflection = prompt.partition("reflection on that attempt:")[2].lower()  # not the examples
            return "Again: Finish[C]" if "option c" in reflection else "Again: Finish[A]"
        return "Finish[A]"

    problem = Problem(id="q1", task="choice", kind="choice", question="Which?", answer="C", choices=["a", "b", "c"])
    trajectories, _ = run_round_steps(scripted_engine(reply), [problem], GenerateConfig(reflections=3), 1, 0)
    sets, _ = build_sets(trajectories, CurateConfig(), None)
    for name, keys in (("dplus", DPLUS_KEYS), ("dpm", PAIR_KEYS)):
        path = tmp_path / name / "train-00000-of-00001.parquet"
        write_shard(path, sets[name], SFTRecord if name == "dplus" else PairRecord, "k")
        out = tmp_path / f"{name}.jsonl"
        export_official(str(tmp_path), str(out), dataset=name)
        exported = lines(out)
        assert exported and all(list(r) == keys for r in exported) and exported[0]["id"] == "q1"
        assert len(pd.read_json(out, lines=True)) == len(sets[name])
        # an exported file comes back as the same records (its prompts are already rendered)
        again = import_official(str(out), str(tmp_path / "again"), task="choice", rendered_prompts=True)
        back = read_records(again.path, SFTRecord if name == "dplus" else PairRecord)
        assert [r.reflection_prompt if name == "dplus" else r.prompt for r in back] == [
            r.reflection_prompt if name == "dplus" else r.prompt for r in sets[name]]
        assert all(r.prompts_rendered for r in back)
    sft = sets["dplus"][0]
    assert lines(tmp_path / "dplus.jsonl")[0]["reason_prompt"] == [sft.first_trial_prompt, sft.second_trial_prompt]


class TestBadInput:
    def write(self, tmp_path, *rows: str) -> str:
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        return str(path)

    def test_bad_json_names_file_and_line(self, tmp_path):
        good = OFFICIAL["dplus"].read_text().splitlines()[0]
        path = self.write(tmp_path, good, '{"id": 1, "question": ')
        with pytest.raises(InteropError, match=rf"{path}, line 2: not valid JSON"):
            import_official(path, str(tmp_path / "out"))

    def test_missing_field_names_file_line_and_field(self, tmp_path):
        rows = lines(OFFICIAL["dpm"])
        del rows[1]["reflection_rejected"]
        path = self.write(tmp_path, *(json.dumps(r) for r in rows))
        with pytest.raises(InteropError, match=rf"{path}, line 2: missing field 'reflection_rejected'"):
            import_official(path, str(tmp_path / "out"))

    def test_unknown_shape_and_mixed_files_are_named(self, tmp_path):
        with pytest.raises(InteropError, match=r"bad.jsonl, line 1: neither field 'reflections'"):
            import_official(self.write(tmp_path, '{"id": 1}'), str(tmp_path / "out"))
        mixed = self.write(tmp_path, OFFICIAL["dplus"].read_text().splitlines()[0],
                           OFFICIAL["dpm"].read_text().splitlines()[0])
        with pytest.raises(InteropError, match=r"bad.jsonl, line 2: a pair record in a file of dplus records"):
            import_official(mixed, str(tmp_path / "out"))

    def test_export_of_several_datasets_asks_for_one(self, tmp_path):
        import_official(str(OFFICIAL["dplus"]), str(tmp_path))
        import_official(str(OFFICIAL["dpm"]), str(tmp_path))
        with pytest.raises(InteropError, match=r"several datasets \['dplus', 'dpm'\]; name one with --dataset"):
            export_official(str(tmp_path), str(tmp_path / "x.jsonl"))


def test_a_dataset_folder_or_hub_id_is_read_through_load_dataset(tmp_path):
    """The hub cannot be reached here; a local dataset folder takes the same `datasets.load_dataset` path."""
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "train.jsonl").write_text(OFFICIAL["dpref"].read_text(encoding="utf-8"), encoding="utf-8")
    manifest = import_official(str(folder), str(tmp_path / "out"))
    assert manifest.name == "dpref" and manifest.rows == 2
    assert [r.chosen for r in read_records(manifest.path, PairRecord)] == [
        r["reflection_chosen"] for r in lines(OFFICIAL["dpref"])]


def test_cli_import_and_export(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["import", str(OFFICIAL["dpref"]), "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "dpref: 2 records" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "data"), "--out", str(tmp_path / "dpref.jsonl")])
    assert result.exit_code == 0, result.output
    assert lines(tmp_path / "dpref.jsonl") == lines(OFFICIAL["dpref"])
    result = runner.invoke(app, ["import", str(OFFICIAL["dpm"]), "--out", str(tmp_path / "x"), "--kind", "nope"])
    assert result.exit_code != 0 and "nope" in result.output


@pytest.mark.parametrize("setting", ["sft_one_stage", "sft_two_stage", "dpo_pm", "dpo_pref"])
def test_imported_data_feeds_every_training_setting(setting, tiny_model_path, tmp_path):
    from models.training import train_adapter
    from reflectevo.config import TrainConfig

    datasets = {name: import_official(str(path), str(tmp_path / "data")) for name, path in OFFICIAL.items()}
    manifest = train_adapter(TrainConfig(setting=setting, max_steps=1, batch_size=2, eval_fraction=0), tiny_model_path,
                             None, datasets, str(tmp_path / "adapter"))
    assert manifest.path and manifest.rows == datasets[manifest.dataset].rows

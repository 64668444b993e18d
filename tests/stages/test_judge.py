"""Dpref judges: the config's choices, another local model, and an OpenAI-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from reflectevo.config import CurateConfig, EngineConfig, GenerateConfig
from reflectevo.schema import ModelRef, Problem
from stages.curate import ModelJudge, OpenAIJudge, build_sets, make_judge
from stages.generate import run_round_steps

PREFERRED = "Option C fits better."


def fixing_reply(prompt: str, sample: int) -> str:
    """Two reflections fix q1 (gold C); the third does not."""
    if "Reflect on the attempt" in prompt:
        return ["Consider option C instead.", PREFERRED, "Check each step again."][sample]
    if "Your reflection on that attempt" in prompt:
        reflection = prompt.partition("reflection on that attempt:")[2].lower()  # not the examples
        return "Again: Finish[C]" if "option c" in reflection else "Again: Finish[A]"
    return "Finish[A]"


@pytest.fixture
def trajectories(scripted_engine):
    problem = Problem(id="q1", task="choice", kind="choice", question="Which?", answer="C", choices=["a", "b", "c"])
    return run_round_steps(scripted_engine(fixing_reply), [problem], GenerateConfig(reflections=3), 1, 0)[0]


@pytest.fixture
def endpoint():
    """An OpenAI-format chat completions server: prefers the reflection that says PREFERRED, or always says A."""
    state = {"requests": [], "always_a": False}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            text = body["messages"][-1]["content"]
            first = text.split("Reflection B:")[0]
            verdict = "A" if state["always_a"] or PREFERRED in first else "B"
            reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": f"Clearer plan. Finish[{verdict}]"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()
    thread.join()


MODEL = ModelRef(base="tiny", base_sha256="x")


class TestOpenAIJudge:
    def test_picks_preferred_in_both_orders_and_stores_prompts_and_verdicts(self, endpoint, trajectories, monkeypatch):
        url, state = endpoint
        monkeypatch.setenv("JUDGE_KEY", "secret")
        cfg = CurateConfig(judge=f"openai:{url}", judge_model="judge-1", judge_api_key_env="JUDGE_KEY")
        judge = make_judge(cfg, EngineConfig(), MODEL, "unused")
        sets, counts = build_sets(trajectories, cfg, judge)

        assert isinstance(judge, OpenAIJudge) and counts["dpref"] == 1
        pair = sets["dpref"][0]
        assert pair.chosen == PREFERRED and pair.judge == f"openai:{url}#judge-1"
        assert [r["path"] for r in state["requests"]] == ["/v1/chat/completions"] * 2
        assert all(r["auth"] == "Bearer secret" for r in state["requests"])
        assert {(r["body"]["model"], r["body"]["temperature"]) for r in state["requests"]} == {("judge-1", 0)}
        sent = [r["body"]["messages"] for r in state["requests"]]
        assert [json.loads(p) for p in pair.judge_prompts] == sent  # the exact request, both orders
        assert sent[0] != sent[1] and pair.judge_verdicts[0].endswith(("Finish[A]", "Finish[B]"))

    def test_position_bias_drops_the_pair(self, endpoint, trajectories):
        url, state = endpoint
        state["always_a"] = True
        sets, counts = build_sets(trajectories, CurateConfig(), OpenAIJudge(url + "/v1", "judge-1"))
        assert sets["dpref"] == [] and counts["dropped_judge_inconsistent"] == 1
        assert state["requests"][0]["path"] == "/v1/chat/completions" and state["requests"][0]["auth"] is None

    def test_reply_without_choices_names_the_endpoint(self, trajectories):
        class Broken(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            with pytest.raises(ValueError, match=rf"judge endpoint {url}/v1/chat/completions answered without"):
                OpenAIJudge(url, "judge-1").compare([(trajectories[0].problem, "a", "b")])
        finally:
            server.shutdown()
            server.server_close()


def test_another_local_model_judges(tiny_model_path, trajectories):
    cfg = CurateConfig(judge=f"model:{tiny_model_path}", judge_max_tokens=8)
    judge = make_judge(cfg, EngineConfig(name="transformers"), MODEL, "unused")
    assert isinstance(judge, ModelJudge) and judge.name == f"model:{tiny_model_path}"
    [result] = judge.compare([(trajectories[0].problem, "Consider option C.", PREFERRED)])
    assert len(result.prompts) == 2 and result.prompts[0].startswith("<|im_start|>user")
    assert result.prompts[0].index("Consider option C.") < result.prompts[0].index(PREFERRED)
    assert result.prompts[1].index(PREFERRED) < result.prompts[1].index("Consider option C.")


def test_none_judge_makes_no_dpref():
    assert make_judge(CurateConfig(judge="none"), EngineConfig(), MODEL, "unused") is None


@pytest.mark.parametrize("fields,message", [
    ({"judge": "gpt4"}, "curate.judge 'gpt4': use 'self', 'none', 'model:<name or path>' or 'openai:<base_url>'"),
    ({"judge": "model:"}, "curate.judge 'model:'"),
    ({"judge": "openai:http://127.0.0.1:1"}, "needs curate.judge_model"),
])
def test_bad_judge_config_names_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        CurateConfig(**fields)

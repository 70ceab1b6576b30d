"""Held-out evaluation: the scripted expert on the tiny world, pass@k / avg@k, edge cases, pooling, the CLI."""

from __future__ import annotations

import json

import pytest
import typer
from simrl.cli.eval import eval_
from simrl.cli.main import _Group
from typer.testing import CliRunner

from simrl.envs.base import make
from simrl.errors import SimrlError
from simrl.evaluation.edge_cases import edge_cases
from simrl.evaluation.evaluate import evaluate_policy
from simrl.evaluation.results import EVAL_JSON, EVAL_TRAJECTORIES, load_eval, merge_results, summarize
from simrl.policies import episode_tasks, make_policy
from simrl.types import Action, Observation, Step, ToolResult, Trajectory, Turn


class FirstTryFails:
    """Answers wrong in the first episode of each task, then lets the expert play (pass@2 1, avg@2 0.5)."""

    def __init__(self, expert) -> None:
        self.expert, self.seen = expert, set()

    async def act(self, task_view, initial, turns):
        if not turns and task_view["task_id"] not in self.seen:
            self.seen.add(task_view["task_id"])
            return Action.final("<answer>no idea</answer>")
        return await self.expert.act(task_view, initial, turns)


def _traj(*results: ToolResult, types=(), status="success", text: str | None = None) -> Trajectory:
    turns = [Turn(action=Action.call("t"), step=Step(observation=Observation(text=text or "", results=[r])))
             for r in results]
    if text is not None:
        turns.append(Turn(action=Action.call("t"), step=Step(observation=Observation(text=text))))
    return Trajectory(task_id="t", env_id="e", initial=Observation(text="?"), turns=turns, status=status,
                      info={"perturbation_types": list(types)})


def test_expert_on_held_out_search_tasks(tiny_world, tmp_path):
    tasks = episode_tasks("search", tiny_world, "test")
    assert {t.type for t in tasks} == {"qa", "table"}
    expert = make_policy("expert", "search", tiny_world, tasks)
    result = evaluate_policy(expert, lambda: make("search", world=tiny_world), tasks, trials=2, out=tmp_path,
                             label="expert")
    m = result.metrics
    assert (m["success"], m["pass@2"], m["avg@2"], m["reward"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["item_f1"] == m["pass@2/item_f1"] == m["avg@2/row_f1"] == 1.0
    assert m["env_failures"] == 0 and result.episodes == 2 * len(tasks) and result.trials == 2
    assert all(t.success == [True, True] for t in result.per_task)
    assert load_eval(tmp_path) == result
    lines = (tmp_path / EVAL_TRAJECTORIES).read_text().splitlines()
    assert len(lines) == 2 * len(tasks)
    assert sorted({json.loads(x)["seed"] for x in lines}) == list(range(2 * len(tasks)))  # seed + r * n + i


def test_pass_at_k_and_avg_at_k(tiny_world):
    tasks = episode_tasks("search", tiny_world, "test")[:3]
    policy = FirstTryFails(make_policy("expert", "search", tiny_world, tasks))
    result = evaluate_policy(policy, lambda: make("search", world=tiny_world), tasks, trials=2)
    assert result.metrics["success"] == 0.5 and result.metrics["avg@2"] == 0.5 and result.metrics["pass@2"] == 1.0
    assert [t.success for t in result.per_task] == [[False, True]] * 3
    one = evaluate_policy(FirstTryFails(make_policy("expert", "search", tiny_world, tasks)),
                          lambda: make("search", world=tiny_world), tasks, trials=1)
    assert one.metrics["pass@1"] == one.metrics["success"] == 0.0


def test_real_faults_and_pages_are_edge_cases(tiny_world):
    tasks = episode_tasks("mcp-world", tiny_world, "dev")
    expert = make_policy("expert", "mcp-world", tiny_world, tasks)
    env = lambda: make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=0.3)  # noqa: E731
    result = evaluate_policy(expert, env, tasks, trials=2, max_turns=60)
    assert result.metrics["pass@2"] == 1.0  # the expert retries 429 / 5xx / timeouts (it gives up after a few)
    assert {"error", "pagination"} <= set(result.edge_cases)
    assert result.edge_cases["error"].episodes >= 1 and result.edge_cases["pagination"].episodes >= 1
    assert sum(s.episodes for s in result.edge_cases.values()) >= result.episodes


def test_edge_cases_from_the_text():
    page = ToolResult(name="list_members", content='{"records": [{"id": 1}], "next_cursor": "b2Zm", "total": 7}')
    last = ToolResult(name="list_members", content='{"records": [], "next_cursor": null, "total": 7}')
    drift = ToolResult(name="search_records", content='{"items": [], "nextCursor": "x-1"}')
    cut = ToolResult(name="web_search", content="[1] https://a\n\n[4 more results not shown: repeat the query]")
    part = ToolResult(name="web_extractor", content='text\n[Part 1 of 3: call web_extractor again with the same '
                                                    'arguments and "page": 2 for the next part]')
    e503 = ToolResult(name="get_record", content="503 Service Unavailable: retry later", is_error=True)
    e504 = ToolResult(name="get_record", content="504 Gateway Timeout: did not answer", is_error=True)
    timeout = ToolResult(name="get_record", content="the tool call timed out after 30s", is_error=True)
    rate = ToolResult(name="get_record", content="429 Too Many Requests (Retry-After: 2)", is_error=True)
    bad_id = ToolResult(name="get_record", content="unknown record id 'organization:000512' (page 503)", is_error=True)
    http = ToolResult(name="web_search", content="HTTP 500: upstream failed", is_error=True)
    quoted = ToolResult(name="web_extractor", content="Founded in 1503; 429 staff; a timeout clause.")
    assert edge_cases(_traj(page)) == {"pagination"}
    assert edge_cases(_traj(last, bad_id, quoted)) == set()  # a last page, a plain tool error, numbers in text
    for r in (drift, cut, part):
        assert edge_cases(_traj(r)) == {"pagination"}
    for r in (e503, e504, timeout, rate, http):
        assert edge_cases(_traj(r)) == {"error"}
    assert edge_cases(_traj(types=["schema_drift", "rate_limit"])) == {"schema_drift", "rate_limit"}
    assert edge_cases(_traj(text='[search_records]\n{"records": [], "next_cursor": "abc"}')) == {"pagination"}


def test_summarize_and_merge():
    from simrl.world.schema import Evidence, QAGold, Task

    def task(i: int) -> Task:
        return Task(task_id=f"q{i}", type="qa", split="test", prompt="?", gold=QAGold(answer="a"),
                    evidence=Evidence(), hops=1, difficulty="easy", template="x")

    ok, bad, paged = _traj(), _traj(status="failure"), _traj(ToolResult(name="s", content='{"next_cursor": "n"}'))
    a = summarize([ok, bad, bad, paged], [task(0), task(1)], 2)  # task 0: ok, bad; task 1: bad, paged-ok
    assert a.metrics["success"] == 0.5 and a.metrics["pass@2"] == 1.0 and a.metrics["avg@2"] == 0.5
    assert a.edge_cases["pagination"].success == 1.0 and a.edge_cases["none"].episodes == 3
    b = summarize([bad, bad], [task(2)], 2)
    pooled = merge_results([a, b], label="all")
    assert pooled.tasks == 3 and pooled.episodes == 6 and pooled.label == "all"
    assert pooled.metrics["pass@2"] == pytest.approx(2 / 3) and pooled.metrics["success"] == pytest.approx(2 / 6)
    assert pooled.edge_cases["none"].episodes == 5 and pooled.edge_cases["none"].success == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="expected 2 tasks x 2 trials"):
        summarize([ok], [task(0), task(1)], 2)
    with pytest.raises(ValueError, match="different trials"):
        merge_results([a, summarize([ok], [task(3)], 1)])
    with pytest.raises(SimrlError, match="trials must be at least 1"):
        evaluate_policy(None, lambda: None, [task(0)], trials=0)


def _cli() -> typer.Typer:
    app = typer.Typer(cls=_Group)
    app.command("eval")(eval_)
    app.command("noop")(lambda: None)  # two commands: `eval` stays a subcommand
    return app


def test_eval_cli(tiny_world, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(_cli(), ["eval", "--policy", "expert", "--env", "mcp-world", "--world", str(tiny_world),
                                "--split", "dev", "--trials", "2", "--transport", "inprocess", "--fault-rate", "0.2",
                                "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "pass@2" in ok.output and "success by edge case met" in ok.output
    assert load_eval(tmp_path).metrics["success"] == 1.0 and (tmp_path / EVAL_JSON).is_file()
    for args, message in [(["--env", "search"], "exactly one of --checkpoint"),
                          (["--policy", "expert", "--env", "search", "--world", str(tiny_world), "--transport",
                            "inprocess"], "options of mcp-world"),
                          (["--policy", "expert"], "give --env"),
                          (["--checkpoint", str(tmp_path / "nope.pt"), "--env", "search", "--world", str(tiny_world)],
                           "no such file"),
                          (["--policy", "expert", "--env", "search", "--world", str(tiny_world), "--split", "x"],
                           "Invalid value for '--split'")]:
        bad = runner.invoke(_cli(), ["eval", *args])
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)

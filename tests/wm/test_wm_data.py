"""``simrl wm data``: real transitions -> chat training rows (JSONL + Parquet), with control-instruction variants."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.perturb.schedule import Schedule
from simrl.perturb.taxonomy import perturbation_class
from simrl.wm import prompts
from simrl.wm.data import COLUMNS, build_rows, variant_context
from simrl.wm.transitions import load_transitions
from tests.wm import trajectory_fixtures as fx

real_trajectories = fx.real_trajectories  # the session fixture
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["wm", "data", *args])


def _inputs(real_trajectories) -> list[str]:
    return [arg for env_id in fx.ENV_IDS for arg in ("--trajectories", str(real_trajectories[env_id]))]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def exported(real_trajectories, tmp_path_factory):
    out = tmp_path_factory.mktemp("wm-data") / "a"
    world = real_trajectories["world"]
    result = _run(*_inputs(real_trajectories), "--world", str(world), "--out", str(out), "--perturb", "8",
                  "--seed", "5")
    assert result.exit_code == 0, result.output
    transitions = [t for env_id in fx.ENV_IDS for t in load_transitions(real_trajectories[env_id], world=world)]
    return out, transitions, result.output


def test_clean_rows_are_the_transitions_with_the_real_observation_as_target(exported):
    out, transitions, output = exported
    rows = _rows(out / "train.jsonl")
    clean = [r for r in rows if r["perturbation"] is None]
    assert len(clean) == len(transitions) and len(rows) == len(transitions) + 8
    for t, r in zip(transitions, clean):
        assert list(r) == list(COLUMNS) and r["control_instruction"] is None
        assert r["messages"][:-1] == t.messages()
        assert len(r["messages"]) == 2 * len(t.history) + 3
        target = r["messages"][-1]
        assert target["role"] == "assistant" and target["content"].startswith("<think>\n\n</think>\n\n")
        assert prompts.parse_prediction(target["content"]) == t.observation.strip()
        assert (r["domain"], r["env_id"], r["task_id"], r["trajectory"], r["turn_idx"]) == \
            (t.domain, t.env_id, t.task_id, t.trajectory, t.turn_idx)
    for domain in ("search", "mcp", "bfcl"):  # the summary table names every domain
        assert domain in output


def test_parquet_holds_the_same_rows(exported):
    out, _, _ = exported
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == list(COLUMNS)
    assert table.to_pylist() == _rows(out / "train.jsonl")


def test_perturbed_rows_carry_a_control_instruction_the_target_complies_with(exported):
    out, transitions, output = exported
    perturbed = [r for r in _rows(out / "train.jsonl") if r["perturbation"] is not None]
    assert len(perturbed) == 8
    by_key = {(t.trajectory, t.turn_idx): t for t in transitions}
    kinds = set()
    for r in perturbed:
        t = by_key[(r["trajectory"], r["turn_idx"])]
        instruction, target = r["control_instruction"], prompts.parse_prediction(r["messages"][-1]["content"])
        assert instruction and target != t.observation.strip()
        assert r["messages"][:-1] == t.messages(control=instruction)  # the control goes into the last user message
        assert r["messages"][-2]["content"].endswith(f"{prompts.CONTROL_HEADER}\n{instruction.strip()}")
        p = perturbation_class(r["perturbation"])()
        assert p.complies(target, variant_context(t, r["perturbation"], 5))
        assert p.control_instruction(variant_context(t, r["perturbation"], 5)) == instruction
        kinds.add(r["perturbation"])
    assert len(kinds) > 1 and "perturbed rows by type" in output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["perturbed"] == 8 and sum(manifest["counts"]["by_perturbation"].values()) == 8
    assert manifest["seed"] == 5 and manifest["simrl_version"] and len(manifest["inputs"]) == 3
    assert sum(i["transitions"] for i in manifest["inputs"]) == len(transitions)


def test_same_seed_same_files_other_seed_other_variants(exported, real_trajectories, tmp_path):
    out, _, _ = exported
    again, other = tmp_path / "again", tmp_path / "other"
    base = [*_inputs(real_trajectories), "--world", str(real_trajectories["world"]), "--perturb", "8"]
    assert _run(*base, "--seed", "5", "--out", str(again)).exit_code == 0
    assert _run(*base, "--seed", "6", "--out", str(other)).exit_code == 0
    for name in ("train.jsonl", "train.parquet", "manifest.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    assert (other / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()


def test_a_schedule_chooses_the_variant_types_and_targets(real_trajectories, tmp_path):
    schedule = tmp_path / "only.yaml"
    schedule.write_text("name: only-429\nperturbations:\n  rate_limit: {rate: 0.1, tools: [web_search], "
                        "params: {retry_after: [7, 7]}}\n")
    out = tmp_path / "out"
    result = _run("--trajectories", str(real_trajectories["search"]), "--out", str(out), "--perturb", "3",
                  "--schedule", str(schedule), "--format", "jsonl", "--no-think")
    assert result.exit_code == 0, result.output
    assert not (out / "train.parquet").exists()
    rows = _rows(out / "train.jsonl")
    perturbed = [r for r in rows if r["perturbation"]]
    assert len(perturbed) == 3 and {r["perturbation"] for r in perturbed} == {"rate_limit"}
    for r in perturbed:
        assert '"name": "web_search"' in r["messages"][-2]["content"]
        assert "Retry-After: 7" in r["messages"][-1]["content"]
    assert all(r["messages"][-1]["content"].startswith("<predicted_observation>\n") for r in rows)


def test_calls_perturbed_when_recorded_are_not_targets(real_trajectories):
    transitions = load_transitions(real_trajectories["mcp-world"])
    marked = [transitions[0].model_copy(update={"perturbation": "server_error"}), *transitions[1:]]
    rows, notes = build_rows(marked, perturb=50, schedule=Schedule.single("server_error"), seed=1)
    assert notes["skipped_perturbed_in_trajectory"] == 1
    assert [r for r in rows if r["perturbation"] is None] == [r for r in rows[:len(transitions) - 1]]
    assert not any(r["trajectory"] == transitions[0].trajectory and r["turn_idx"] == 0 for r in rows)
    assert notes["variants_unavailable"] == 50 - (len(rows) - len(transitions) + 1) > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--perturb", "0", "--schedule", "gentle"], "give --perturb N"),
    (["--format", "csv"], "--format takes"),
    (["--schedule", "no-such-schedule", "--perturb", "1"], "schedule not found"),
])
def test_bad_options_are_user_errors(real_trajectories, tmp_path, args, message):
    result = _run("--trajectories", str(real_trajectories["search"]), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2 and message in result.output


def test_missing_or_empty_inputs_are_user_errors(real_trajectories, tmp_path):
    result = _run("--trajectories", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no such file" in result.output
    only_answers = tmp_path / "answers.jsonl"
    line = json.loads(real_trajectories["search"].read_text().splitlines()[0])
    line["turns"] = line["turns"][-1:]  # the final answer only
    only_answers.write_text(json.dumps(line) + "\n")
    result = _run("--trajectories", str(only_answers), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no transitions" in result.output


def test_agentworldbench_files_per_domain_read_back_and_score(real_trajectories, tmp_path):
    world = real_trajectories["world"]
    out = tmp_path / "awb"
    result = _run(*_inputs(real_trajectories), "--world", str(world), "--out", str(out), "--perturb", "4",
                  "--format", "jsonl,agentworldbench")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (out / "agentworldbench").iterdir())
    assert files == ["bfcl_test.jsonl", "mcp_test.jsonl", "search_test.jsonl"]  # eval.py's <domain>_test.jsonl
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == ["train.jsonl"] + [f"agentworldbench/{f}" for f in files]
    real = {env_id: load_transitions(real_trajectories[env_id], world=world) for env_id in fx.ENV_IDS}
    for env_id, domain in (("search", "search"), ("mcp-world", "mcp"), ("bfcl", "bfcl")):
        rows = _rows(out / "agentworldbench" / f"{domain}_test.jsonl")
        assert {r["task"] for r in rows} == {domain} and all(r["turn_idx"] >= 1 for r in rows)
        back = load_transitions(out / "agentworldbench" / f"{domain}_test.jsonl")
        # only real transitions (no perturbed variant), with system, history, action and observation kept
        assert [(t.system, t.action_text, t.observation, [h.observation for h in t.history]) for t in back] == \
            [(t.system, t.action_text, t.observation, [h.observation for h in t.history]) for t in real[env_id]]
    scored = CliRunner().invoke(app, ["wm", "eval", "--trajectories", str(out / "agentworldbench"), "--out",
                                      str(tmp_path / "scores")])
    assert scored.exit_code == 0, scored.output
    scores = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert set(scores["repeat-previous"]["by_domain"]) == {"search", "mcp", "bfcl"}


def test_called_tools_rows_list_only_the_tools_called_so_far(real_trajectories, tmp_path):
    from simrl.wm.transitions import called_tools_system

    world = real_trajectories["world"]
    result = _run("--trajectories", str(real_trajectories["mcp-world"]), "--world", str(world), "--wm-tools",
                  "called", "--out", str(tmp_path / "d"))
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "d" / "train.jsonl")
    transitions = load_transitions(real_trajectories["mcp-world"], world=world)
    assert [r["messages"][0]["content"] for r in rows] == [called_tools_system(t, world) for t in transitions]
    assert all(len(r["messages"][0]["content"]) < len(t.system) for r, t in zip(rows, transitions))

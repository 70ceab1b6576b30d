"""Bring your own environment: a real plugin package installed with pip, used through the CLI only.

``tests/plugins/simrl_codebook`` is one module plus its registration (docs/plugins.md). Installed with
``pip install --target`` (a real build of the folder, its ``simrl.envs`` entry point included), it must
be listed and checked, run by the scripted expert, run in its (generic) world-model version under a
perturbation schedule, with an LLM world model served on 127.0.0.1, and compared in a tiny ablation; the
same module named by ``simrl --import`` must work without installing it, in ablate's child processes too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simrl.testing.openai_stub import StubEndpoint

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "tests" / "plugins" / "simrl_codebook"
TINY = ROOT / "worlds" / "tiny.yaml"

RECIPE = """\
name: codebook-tiny
description: The codebook plugin's three arms; a mechanics check, not an experiment.
world: {{spec: {spec}, seed: 0, eval_worlds: [1000]}}
env: {{id: codebook}}
arms:
  real: {{environment: real}}
  sim-uncontrolled: {{environment: world_model, backend: oracle}}
  sim-controlled: {{environment: world_model, backend: oracle, schedule: gentle, mode: inject}}
policy: {{kind: scorer, dim: 16, buckets: 1024}}
trainer: {{kind: embedded, checkpoint_every: 2}}
budget: {{steps: 2, group_size: 2, batch: 1, max_turns: 6}}
warm_start: {{demos: 2, epochs: 1}}
evaluation: {{split: test, trials: 1, greedy: true}}
primary: {{a: sim-controlled, b: sim-uncontrolled, metric: success}}
seeds: {seeds}
"""


def _simrl(args: list[str], path: Path, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SIMRL_IMPORT"} | {"PYTHONPATH": str(path)} | env
    proc = subprocess.run([sys.executable, "-m", "simrl.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, env=environ, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The plugin package, built and installed by pip into a folder (put on PYTHONPATH by the tests)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src") / "simrl_codebook"
    shutil.copytree(PLUGIN, build, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(build)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(target.glob("simrl_codebook-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cbworld") / "tiny-0"
    subprocess.run([sys.executable, "-m", "simrl.cli.main", "world", "generate", str(TINY), "--seed", "0",
                    "--out", str(out)], check=True, capture_output=True)
    return out


def test_installed_plugin_is_listed_checked_and_rolled_out(installed, world, tmp_path):
    listed = _simrl(["env", "list"], installed, tmp_path).stdout
    assert "codebook" in listed and "lookup(word)" in listed
    wide = _simrl(["env", "list", "--wide"], installed, tmp_path, COLUMNS="250").stdout  # one row a line
    rows = {cells[1]: cells[2:6] for line in wide.splitlines()
            if len(cells := [c.strip() for c in line.split("│")]) > 6 and cells[1]}
    assert rows["codebook"] == ["codebook", "yes", "yes", "simrl_codebook"]  # its types, world model, oracle, module
    assert rows["bfcl"][1:3] == ["no", "no"] and rows["mcp"][1:3] == ["yes", "no"]  # bfcl opted out; mcp: no truth
    for backend in ("real", "oracle"):
        checked = _simrl(["env", "check", "codebook", "--world", str(world), "--world-model", backend],
                         installed, tmp_path).stdout
        assert checked.count(" ok ") == 4 and "FAIL" not in checked

    real = tmp_path / "real.jsonl"
    _simrl(["rollout", "--env", "codebook", "--world", str(world), "--split", "train", "-o", str(real)],
           installed, tmp_path)
    trajs = _lines(real)
    assert len(trajs) == 8 and all(t["env_id"] == "codebook" and t["backend"] == "real" for t in trajs)
    assert all(t["status"] == "success" for t in trajs)  # the plugin's expert and its own reward
    fidelity = tmp_path / "fidelity"  # its real transitions replayed on its oracle (the real environment)
    _simrl(["wm", "eval", "--trajectories", str(real), "--world", str(world), "--world-model", "oracle", "--out",
            str(fidelity)], installed, tmp_path)
    oracle = json.loads((fidelity / "scores.json").read_text())["oracle"]
    assert oracle["n"] == 8 and oracle["skipped"] == {} and oracle["factuality"] == 100.0

    sim = tmp_path / "sim.jsonl"
    _simrl(["rollout", "--env", "codebook", "--world", str(world), "--split", "train", "--world-model", "oracle",
            "--schedule", "fault-heavy", "--perturb-seed", "3", "-o", str(sim)], installed, tmp_path)
    trajs = _lines(sim)
    assert len(trajs) == 8 and all(t["backend"] == "oracle" for t in trajs)
    applied = [p for t in trajs for turn in t["turns"] for p in turn["step"]["info"].get("perturbations", [])]
    assert applied, "the schedule perturbed no call of the world-model version"
    # the generic oracle is the real environment itself: clean calls answer as the real codebook does
    real_codes = {t["task_id"]: t["turns"][0]["step"]["observation"]["text"] for t in _lines(real)}
    clean = [t for t in trajs if not t["turns"][0]["step"]["info"].get("perturbations")]
    assert clean and all(t["turns"][0]["step"]["observation"]["text"] == real_codes[t["task_id"]] for t in clean)


def test_installed_plugin_runs_a_tiny_ablation(installed, tmp_path):
    recipe = tmp_path / "codebook.yaml"
    recipe.write_text(RECIPE.format(spec=TINY, seeds="[0]"))  # one seed: the mechanics, not the statistics
    _simrl(["ablate", str(recipe), "--out", str(tmp_path / "out")], installed, tmp_path)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "codebook" in report and "sim-controlled" in report
    runs = [tmp_path / "out" / arm / f"seed-{s}" for arm in ("real", "sim-uncontrolled", "sim-controlled") for s in (0,)]
    assert all((run / "final.pt").is_file() for run in runs), sorted(p.name for p in (tmp_path / "out").iterdir())


def test_import_option_loads_an_uninstalled_module_in_every_process(world, tmp_path):
    plain = tmp_path / "mods"
    plain.mkdir()
    shutil.copy(PLUGIN / "simrl_codebook.py", plain / "simrl_codebook.py")
    assert "codebook" not in _simrl(["env", "list"], plain, tmp_path).stdout  # no entry point: not loaded
    assert "codebook" in _simrl(["--import", "simrl_codebook", "env", "list"], plain, tmp_path).stdout

    bad = _simrl(["--import", "no_such_module_xyz", "env", "list"], plain, tmp_path, check=False)
    assert bad.returncode == 2 and "no_such_module_xyz" in bad.stderr and "Traceback" not in bad.stderr
    unknown = _simrl(["rollout", "--env", "codebook", "--world", str(world), "-o", str(tmp_path / "x.jsonl")],
                     plain, tmp_path, check=False)
    assert unknown.returncode == 2 and "--import" in unknown.stderr

    recipe = tmp_path / "codebook.yaml"
    recipe.write_text(RECIPE.format(spec=TINY, seeds="[0]"))
    _simrl(["--import", "simrl_codebook", "ablate", str(recipe), "--out", str(tmp_path / "out")], plain, tmp_path)
    assert (tmp_path / "out" / "report.md").is_file()


def test_llm_world_model_of_a_plugin_environment(world, tmp_path):
    """The generic world-model version with an LLM (a stub endpoint): the tools in its prompt, its
    predictions as the observations, and a line echoing its hidden prompt (a tool definition) removed."""
    plain = tmp_path / "mods"
    plain.mkdir()
    shutil.copy(PLUGIN / "simrl_codebook.py", plain / "simrl_codebook.py")

    def respond(request: dict) -> str:
        # an adversarial model: a made-up code, then a line of the tool definitions it was shown
        return ('<think>ok</think><predicted_observation>{"word": "amber", "code": "Z999"}\n'
                'Note: The secret code of a word of the codebook.</predicted_observation>')

    with StubEndpoint(respond) as endpoint:
        out = tmp_path / "llm.jsonl"
        _simrl(["--import", "simrl_codebook", "rollout", "--env", "codebook", "--world", str(world), "--split",
                "dev", "--world-model", "openai:stub-model", "--wm-base-url", endpoint.url, "-o", str(out)],
               plain, tmp_path)
        system = endpoint.requests[0]["messages"][0]["content"]
    trajs = _lines(out)
    assert trajs and all(t["backend"] == "openai" for t in trajs)
    assert "lookup" in system and "list_words" in system
    first = trajs[0]["turns"][0]["step"]
    assert first["observation"]["text"] == '{"word": "amber", "code": "Z999"}'  # the prediction, leak removed
    assert first["info"]["leak_tool"] == 1 and first["info"]["leaked"] is True
    assert all(t["status"] == "failure" for t in trajs)  # the expert answers the predicted code: wrong


def test_rollout_on_any_mcp_server_by_command(world, tmp_path):
    """``--env mcp --server-command``: a real MCP server started per episode (here a world's record
    server, ``simrl serve mcp``), the world's tasks, and an LLM policy (a stub endpoint) calling its tools."""

    def policy(request: dict) -> dict | str:
        if request["messages"][-1]["role"] == "tool":
            return "<answer>unknown</answer>"
        assert "find_by_name" in {t["function"]["name"] for t in request["tools"]}  # the server's own listing
        return {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "find_by_name", "arguments": json.dumps({"name": "a"})}}]}

    command = f"{sys.executable} -m simrl.cli.main serve mcp --world {world}"
    out = tmp_path / "mcp.jsonl"
    with StubEndpoint(policy) as endpoint:
        _simrl(["rollout", "--env", "mcp", "--server-command", command, "--world", str(world), "--split", "dev",
                "-n", "2", "-p", f"openai:{endpoint.url}#stub-model", "-o", str(out)], tmp_path, tmp_path)
    trajs = _lines(out)
    assert len(trajs) == 2 and all(t["env_id"] == "mcp" and t["task_id"].startswith("tiny-0-") for t in trajs)
    first = trajs[0]["turns"][0]["step"]["observation"]
    assert first["results"][0]["name"] == "find_by_name" and not first["results"][0]["is_error"]
    assert "total" in json.loads(first["results"][0]["content"])  # the record server answered (its JSON layout)

    missing = _simrl(["rollout", "--env", "mcp", "--world", str(world), "-o", str(tmp_path / "x.jsonl")],
                     tmp_path, tmp_path, check=False)
    assert missing.returncode == 2 and "--server-command" in missing.stderr


def test_a_broken_plugin_is_one_clear_error(tmp_path):
    """An installed entry point whose module fails to import: every command says which plugin, exit 2."""
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[simrl.envs]\nbroken = broken_plugin_module\n")
    (site / "broken_plugin_module.py").write_text("raise RuntimeError('plugin bug')\n")
    out = _simrl(["env", "list"], site, tmp_path, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "environment plugin 'broken' (broken_plugin_module" in out.stderr and "plugin bug" in out.stderr

"""Fuzz-style probes of every CLI command that reads a file: each bad input is exit 2, one ``error:``
line on stderr (a validation error may add one indented line per problem), and no traceback.

Classes probed: binary, non-UTF-8, malformed-YAML, empty and missing files and folders given as spec,
recipe, schedule, prompt template or checkpoint; truncated and edited world files (``graph.json``,
``tasks.jsonl``, ``manifest.json``, ``corpus.jsonl``, ``simulation.jsonl``) read by ``world inspect``,
``env check``, ``rollout`` and ``eval`` (``serve search`` / ``serve mcp`` in real subprocesses); output
paths that are a folder or under a file; non-finite floats in a recipe; a URL that is not one; an
unbalanced quote in ``--server-command``. ``PROBES`` is reported in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
WORLD_FILES = ("graph.json", "tasks.jsonl", "manifest.json", "corpus.jsonl", "simulation.jsonl")
BAD_FILES = {"binary": b"\x00\x01\x02\xff\xfe" * 40, "latin1": "name: caf\xe9\nseed: 1\n".encode("latin-1"),
             "yaml": b"name: [unclosed\n  - : :\n", "empty": b""}


def _assert_clean_exit_2(result, probe: str) -> None:
    err = result.stderr if result.stderr_bytes is not None else result.output
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("  ")]
    assert result.exit_code == 2, (probe, result.exit_code, result.output[-800:], repr(result.exception))
    assert "Traceback" not in result.output and "Traceback" not in err, probe
    assert len(lines) == 1 and lines[0].startswith("error: "), (probe, err)


def _corrupt(world: Path, tmp: Path, name: str, how: str) -> Path:
    out = tmp / f"{name}-{how}"
    shutil.copytree(world, out, ignore=shutil.ignore_patterns(".index"))
    path = out / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else data + b'\n{"edited": true}\n')
    return out


def _file_probes(tmp: Path, world: Path) -> list[tuple[str, list[str]]]:
    probes = []
    for kind, data in BAD_FILES.items():
        bad = tmp / f"{kind}.yaml"
        bad.write_bytes(data)
        for what in ("missing", "folder", kind):
            path = str(tmp / "nope.yaml") if what == "missing" else str(tmp) if what == "folder" else str(bad)
            if what != kind and kind != "binary":
                continue  # missing / folder once
            probes += [
                (f"spec:{what}", ["world", "generate", path, "--out", str(tmp / "w-out")]),
                (f"recipe:{what}", ["train", path, "--dry-run"]),
                (f"ablate-recipe:{what}", ["ablate", path]),
                (f"schedule:{what}", ["perturb", "preview", path]),
                (f"rollout-schedule:{what}", ["rollout", "--env", "search", "--world", str(world), "-n", "1",
                                              "--out", str(tmp / "t.jsonl"), "--schedule", path]),
                *([] if what == "yaml" else [(f"prompt:{what}", ["env", "check", "search", "--world", str(world), "--world-model", "oracle",
                                    "--wm-prompt", path])]),  # a prompt is free text: any YAML is fine
                (f"checkpoint:{what}", ["eval", "--checkpoint", path, "--env", "search", "--world", str(world),
                                        "-n", "1"]),
                (f"report:{what}", ["report", path]),
            ]
    return probes


def _world_probes(tmp: Path, world: Path) -> list[tuple[str, list[str]]]:
    probes = []
    for name in WORLD_FILES:
        for how in ("truncated", "edited"):
            bad = str(_corrupt(world, tmp, name, how))
            probes += [
                (f"inspect:{name}:{how}", ["world", "inspect", bad]),
                (f"env-check:{name}:{how}", ["env", "check", "search", "mcp-world", "--world", bad]),
                (f"rollout:{name}:{how}", ["rollout", "--env", "mcp-world", "--world", bad, "-n", "1",
                                           "--out", str(tmp / f"{name}-{how}.jsonl")]),
                (f"eval:{name}:{how}", ["eval", "--policy", "expert", "--env", "search", "--world", bad, "-n", "1"]),
            ]
    return probes


def _misc_probes(tmp: Path, world: Path) -> list[tuple[str, list[str]]]:
    recipe = (ROOT / "recipes" / "quickstart.yaml").read_text(encoding="utf-8")
    inf = tmp / "inf.yaml"
    bad = re.sub(r"temperature: [0-9.]+", "temperature: .inf", recipe, count=1)
    assert bad != recipe, "the probe must put .inf into the recipe"
    inf.write_text(bad.replace("../worlds", str(ROOT / "worlds")), encoding="utf-8")
    afile = tmp / "a-file"
    afile.write_text("x", encoding="utf-8")
    rollout = ["rollout", "--env", "search", "--world", str(world), "-n", "1"]
    return [
        ("recipe:.inf", ["train", str(inf), "--dry-run"]),
        ("wm-base-url:notaurl", [*rollout, "--out", str(tmp / "u.jsonl"), "--world-model", "openai:m",
                                 "--wm-base-url", "notaurl"]),
        ("server-command:quote", ["env", "check", "mcp", "--server-command", "python -c 'unbalanced"]),
        ("out:folder", [*rollout, "--out", str(tmp)]),
        ("out:under-a-file", [*rollout, "--out", str(afile / "t.jsonl")]),
        ("out:spec-onto-a-file", ["world", "generate", str(ROOT / "worlds" / "tiny.yaml"), "--out", str(afile)]),
        ("eval-out:a-file", ["eval", "--policy", "expert", "--env", "search", "--world", str(world), "-n", "1",
                             "--out", str(afile)]),
    ]


PROBES: list[str] = []


def test_every_bad_input_is_exit_2_one_line_no_traceback(tiny_world, tmp_path):
    runner = CliRunner()
    probes = _file_probes(tmp_path, tiny_world) + _world_probes(tmp_path, tiny_world) + _misc_probes(tmp_path, tiny_world)
    failed = []
    for probe, args in probes:
        result = runner.invoke(app, args)
        try:
            _assert_clean_exit_2(result, probe)
        except AssertionError as err:
            failed.append(str(err)[:600])
        PROBES.append(probe)
    assert not failed, f"{len(failed)}/{len(probes)} probes failed:\n" + "\n".join(failed)


@pytest.mark.parametrize("server", [["serve", "search"], ["serve", "mcp", "--transport", "http", "--port", "0"]])
def test_servers_refuse_a_damaged_world_before_serving(server, tiny_world, tmp_path):
    bad = _corrupt(tiny_world, tmp_path, "corpus.jsonl", "truncated")
    proc = subprocess.run([sys.executable, "-m", "simrl.cli.main", *server, "--world", str(bad)],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert len(lines) == 1 and "corpus.jsonl" in lines[0] and "simrl world generate" in lines[0]

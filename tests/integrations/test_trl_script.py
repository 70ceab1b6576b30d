"""The TRL user script of docs/trl.md, taken from the page itself (so the page and this test cannot drift), trains
for 2 steps on CPU with a tiny random model: on the quickstart's real arm and on its controlled world-model arm
(the oracle with the mcpmark schedule)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="simrl.integrations.trl needs trl; install simrl[trl]")
pytest.importorskip("jmespath", reason="TRL's tool-call parser on transformers < 5.13 needs jmespath")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def doc_script() -> str:
    """The ```python block of docs/trl.md that starts with ``# train_trl.py``."""
    found = re.search(r"```python\n(# train_trl\.py.*?)```", (ROOT / "docs" / "trl.md").read_text(), re.S)
    assert found, "docs/trl.md lost its train_trl.py block"
    return found.group(1)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    """The tiny random model with Qwen2.5's chat template (one TRL parses tool calls from)."""
    import trl
    from transformers import AutoTokenizer

    from simrl.testing.tiny_model import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    tok.save_pretrained(folder)
    return folder


def test_the_documented_script_trains_on_a_real_and_a_world_model_arm(tmp_path, tiny_qwen):
    script = tmp_path / "train_trl.py"
    script.write_text(doc_script())
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for arm in ("real", "sim-controlled"):
        done = subprocess.run(
            [sys.executable, str(script), "--model", str(tiny_qwen), "--arm", arm, "--out", str(out),
             "--output_dir", str(out / f"grpo-{arm}"), "--max_steps", "2", "--per_device_train_batch_size", "2",
             "--num_generations", "2", "--max_completion_length", "48", "--save_strategy", "no"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        logged = _logged(done.stdout + done.stderr)
        assert len(logged) == 2 and all("rewards/reward/mean" in row and "simrl/success" in row for row in logged)
    rows = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert [r["backend"] for r in rows] == ["real"] * 4 + ["oracle"] * 4  # 2 steps x 2 rollouts per arm
    assert all(r["env_id"] == "mcp-world" and "perturbations" in r["info"] for r in rows)


def _logged(stdout: str) -> list[dict]:
    """The step logs the trainer prints (``{'loss': ...}``, one per step), read as dicts."""
    import ast

    return [ast.literal_eval(m) for m in re.findall(r"(\{'loss'.*?\})", stdout)]

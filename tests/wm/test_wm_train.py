"""``simrl wm train``: TRL SFT of a tiny random model on `wm data` rows; completion-only loss, resume, loading."""

from __future__ import annotations

import asyncio
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

"""Experiment tracking: the recipe's logging block, --report-to, TensorBoard files of an ablation read back,
trackio and W&B offline, and the loggers TRL and verl are given. No network."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simrl.errors import SimrlError, SpecError
from simrl.experiment import runs, tracking
from simrl.experiment.recipe import load_recipe, parse_recipe, recipe_yaml
from simrl.experiment.tracking import run_tracking, with_report_to
from tests.experiment.tiny_recipe import tiny_ablation

ROOT = Path(__file__).resolve().parents[2]
RECIPE = tiny_ablation("tiny-tracked")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logging_block_is_validated_and_overridden():
    assert doctest.testmod(tracking).failed == 0  # parse_report_to
    assert parse_recipe(RECIPE).logging.report_to == []  # none by default
    for bad, field in [({"report_to": ["mlflow"]}, "logging.report_to.0"),
                       ({"report_to": ["wandb", "wandb"]}, "logging: Value error"),
                       ({"reportto": ["wandb"]}, "logging.reportto: unknown field")]:
        with pytest.raises(SpecError) as err:
            parse_recipe({**RECIPE, "logging": bad})
        assert field.split(":")[0] in str(err.value), str(err.value)
    rec = with_report_to(parse_recipe({**RECIPE, "logging": {"report_to": ["wandb"]}}), ["tensorboard"])
    assert rec.logging.report_to == ["tensorboard"]
    assert with_report_to(rec, ["none"]).logging.report_to == [] and with_report_to(rec, None) is rec
    with pytest.raises(SimrlError, match="--report-to mlflow: choose from tensorboard, trackio, wandb"):
        with_report_to(rec, ["tensorboard,mlflow"])
    track = run_tracking(rec, "sim", 1, "/tmp/abl-7")
    assert (track.name, track.group, track.project) == ("sim-seed1", "abl-7", "simrl-tiny-tracked")
    assert track.tensorboard_dir == Path("/tmp/abl-7/tracking/tensorboard/sim/seed-1")
    assert track.config["arm"] == "sim" and track.config["seed"] == 1 and track.config["recipe"] == "tiny-tracked"
    assert track.env()["WANDB_RUN_GROUP"] == "abl-7" and track.env()["TENSORBOARD_DIR"] == str(track.tensorboard_dir)


QUICK = ["budget.steps=2", "seeds=[0,1]", "budget.group_size=2", "warm_start.demos=2", "world.entities=100",
         "world.eval_worlds=[]", "evaluation.split=dev", "evaluation.max_tasks=1"]
"""`simrl ablate quickstart` reduced to a test's size (2 steps, 2 seeds, one evaluation task per world)."""
ARMS = ("real", "sim-uncontrolled", "sim-controlled")


def test_ablation_tensorboard_files_hold_the_runs_baselines_and_comparisons(tmp_path):
    """`simrl ablate quickstart --report-to tensorboard` (reduced): one run per arm x seed (training and held-out
    result), one per baseline x seed, and a report run with the primary and secondary comparisons and the
    plots; it says where they are."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from simrl.experiment.ablate import run_ablation

    out = tmp_path / "abl"
    sets = [a for kv in QUICK for a in ("--set", kv)]
    done = subprocess.run([sys.executable, "-m", "simrl.cli.main", "ablate", "quickstart", "--out", str(out), "--jobs",
                           "2", "--report-to", "tensorboard", *sets], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert not any(e["failed"] for e in report["arms"].values()), report["arms"]
    board = out / "tracking" / "tensorboard"
    assert f"tensorboard: {board} (open: tensorboard --logdir {board})" in done.stdout  # where, and how to open
    found = sorted(str(p.parent.relative_to(board)) for p in board.rglob("events.out.tfevents.*"))
    bases = [f"baselines/{b}/seed-{s}" for b in report["baselines"] for s in (0, 1)]
    assert sorted(set(found)) == sorted([*(f"{a}/seed-{s}" for a in ARMS for s in (0, 1)), "report", *bases])
    assert len(bases) >= 4  # untrained and warmstart at least
    for arm in ARMS:
        for seed in (0, 1):
            acc = EventAccumulator(str(board / arm / f"seed-{seed}")).Reload()
            metrics = _rows(runs.RunFiles(runs.run_dir(out, arm, seed)).metrics)  # the source of truth
            got = [(e.step, e.value) for e in acc.Scalars("train/reward")]
            assert got == [(m["step"], pytest.approx(m["reward"])) for m in metrics]
            summary = json.loads((runs.run_dir(out, arm, seed) / "summary.json").read_text())
            assert acc.Scalars("eval/all/success")[0].value == pytest.approx(summary["evaluation"]["all"]["success"])
            held = report["arms"][arm]["seeds"][str(seed)]["metrics"]["success"]
            assert [(e.step, e.value) for e in acc.Scalars("heldout/success")] == [(2, pytest.approx(held))]
            config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
            assert f'"arm": "{arm}"' in config and f'"seed": {seed}' in config and '"group": "abl"' in config
    for name, entry in report["baselines"].items():  # the baselines, read back
        for seed, rec in entry["seeds"].items():
            acc = EventAccumulator(str(board / "baselines" / name / f"seed-{seed}")).Reload()
            assert acc.Scalars("heldout/success")[0].value == pytest.approx(rec["metrics"]["success"])
    acc = EventAccumulator(str(board / "report"), size_guidance={"images": 0, "scalars": 0}).Reload()
    test = report["primary"]["test"]  # the primary comparison, read back
    for key in ("mean", "low", "high", "p"):
        assert acc.Scalars(f"primary/{key}")[0].value == pytest.approx(test[key], abs=1e-6)
    sec = next(t for t in report["secondary"] if t["b"] == "untrained" and t["subset"] == "overall")
    assert acc.Scalars(f"secondary/{sec['a']} - untrained/success/mean")[0].value == pytest.approx(sec["mean"], abs=1e-6)
    mean = report["baselines"]["untrained"]["metrics"]["success"]["mean"]
    assert acc.Scalars("mean/untrained/success/mean")[0].value == pytest.approx(mean, abs=1e-6)
    assert {"plots/final_scores", "plots/learning_curves"} <= set(acc.Tags()["images"])
    # the trackers are not the experiment: another --report-to resumes the same ablation
    rec = load_recipe("quickstart", QUICK)
    assert "tensorboard" in (out / "recipe.yaml").read_text()
    run_ablation(with_report_to(rec, ["none"]), out, jobs=1)
    assert yaml.safe_load((out / "recipe.yaml").read_text())["logging"]["report_to"] == []


def test_trackio_and_wandb_offline(tmp_path):
    missing = [m for m in ("trackio", "wandb") if __import__("importlib").util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    data = {**RECIPE, "seeds": [0], "arms": {"real": RECIPE["arms"]["real"]}, "budget": {**RECIPE["budget"], "steps": 2},
            "logging": {"project": "simrl-offline-test", "group": "grp"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "TRACKIO_DIR": str(tmp_path / "trackio"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("WANDB_DIR", None)
    done = subprocess.run([sys.executable, "-m", "simrl.cli.main", "train", str(tmp_path / "r.yaml"), "--arm", "real",
                           "--out", str(tmp_path / "out"), "--report-to", "trackio", "--report-to", "wandb"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped logging" not in done.stderr, done.stderr  # no tracker dropped on the way
    metrics = _rows(tmp_path / "out" / "real" / "seed-0" / "metrics.jsonl")
    read = ("import json; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps([S.get_runs('simrl-offline-test'), S.get_logs('simrl-offline-test', 'real-seed0'), "
            "S.get_run_config('simrl-offline-test', 'real-seed0')]))")
    back = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=120)
    runs_, logs, config = json.loads(back.stdout.strip().splitlines()[-1])
    assert runs_ == ["real-seed0"]
    rewards = {row["step"]: row["train/reward"] for row in logs if "train/reward" in row}
    assert rewards == {m["step"]: pytest.approx(m["reward"]) for m in metrics}
    assert config["arm"] == "real" and config["seed"] == 0 and config["group"] == "grp"
    offline = list((tmp_path / "out" / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1  # W&B's offline run, for `wandb sync`
    blob = offline[0].read_bytes()  # its records are protobuf: names and keys are plain UTF-8 inside
    assert b"real-seed0" in blob and b"grp" in blob and b"train/reward" in blob and b"eval/all/success" in blob


def test_trl_and_verl_are_given_the_loggers(tiny_world, tmp_path):
    from simrl.trainers.verl.config import VerlFiles, job_env, overrides

    llm = {"policy": {"kind": "llm", "model": "m"}, "world": {"spec": str(tiny_world)},
           "logging": {"report_to": ["tensorboard", "wandb"], "project": "p"}}
    verl = parse_recipe({**RECIPE, **llm, "trainer": {"kind": "verl", "verl": {"n_gpus_per_node": 1}}})
    files = VerlFiles(tmp_path / "out" / "sim" / "seed-1" / "verl", "sim")
    got = dict(item.split("=", 1) for item in overrides(verl, "sim", files, seed=1))
    assert got["trainer.logger"] == "[console,tensorboard,wandb]"
    assert got["trainer.project_name"] == "p" and got["trainer.experiment_name"] == "sim-seed1"
    env = job_env(verl, "sim", 1, files)
    assert env["WANDB_RUN_GROUP"] == "out" and env["TENSORBOARD_DIR"].endswith("out/tracking/tensorboard/sim/seed-1")
    plain = parse_recipe({**RECIPE, **llm, "logging": {}, "trainer": {"kind": "verl", "verl": {"n_gpus_per_node": 1}}})
    assert dict(i.split("=", 1) for i in overrides(plain, "sim", files))["trainer.logger"] == "[console]"
    assert job_env(plain, "sim", 1, files) == {} and "logging" in recipe_yaml(plain)

    pytest.importorskip("trl", reason="the TRL trainer needs trl")
    from simrl.trainers.trl import grpo_config

    trl = parse_recipe({**RECIPE, **llm, "trainer": {"kind": "trl"}})
    args = grpo_config(trl, runs.RunFiles(tmp_path / "out" / "sim" / "seed-1"), 1, "cpu")
    assert args.report_to == ["tensorboard", "wandb"] and args.run_name == "sim-seed1" and args.project == "p"
    args = grpo_config(parse_recipe({**RECIPE, **llm, "logging": {}, "trainer": {"kind": "trl"}}),
                       runs.RunFiles(tmp_path / "r" / "sim" / "seed-1"), 1, "cpu")
    assert args.report_to == []

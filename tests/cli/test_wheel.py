"""A non-editable wheel install runs from any directory: the shipped worlds, recipes and schedules are in
the wheel and found by name (the README's `simrl ablate quickstart --set seeds=[0]`)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with simrl installed from a wheel of this checkout; dependencies from this interpreter."""
    if not _setuptools_ok():
        pytest.skip("building the wheel offline needs setuptools>=77 in this environment (pyproject's build-system)")
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, cwd=tmp)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies: this interpreter's package folders, appended (a .pth line is a path, so the
    # editable install of this checkout, itself a .pth file, is not picked up)
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    deps += [line.strip() for p in deps for f in Path(p).glob("*.pth") if not f.name.startswith("__editable__")
             for line in f.read_text().splitlines() if line.strip().startswith("/") and Path(line.strip()).is_dir()]
    (Path(purelib) / "_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    wheel = next((tmp / "dist").glob("simrl-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(env_dir / "bin" / "python"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_the_wheel_ships_and_resolves_every_file_by_name(wheel_venv, tmp_path):
    code = ("import simrl, simrl.assets as a; from simrl.experiment.recipe import load_recipe; "
            "from simrl.perturb import load_schedule; from simrl.world import load_spec; "
            "assert 'site-packages' in simrl.__file__, simrl.__file__; "
            "[load_recipe(n) for n in a.shipped_names('recipe')]; "
            "[load_schedule(n) for n in a.shipped_names('schedule')]; [load_spec(n) for n in a.shipped_names('world')]; "
            "print(len(a.shipped_names('recipe')), a.root())")
    out = _run(wheel_venv, "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    count, root = out.stdout.split()
    assert int(count) >= 8 and Path(root).name == "simrl" and str(wheel_venv) in root
    dry = _run(wheel_venv, "-m", "simrl", "train", "quickstart", "--dry-run", "--set", "seeds=[0]", cwd=tmp_path)
    assert dry.returncode == 0 and "plan:" in dry.stdout, dry.stderr
    world = _run(wheel_venv, "-m", "simrl", "world", "generate", "tiny", "--entities", "60", "-o", "w", cwd=tmp_path)
    assert world.returncode == 0 and (tmp_path / "w" / "manifest.json").is_file(), world.stderr


def test_a_tiny_ablation_from_the_wheel_in_another_directory(wheel_venv, tmp_path):
    sets = ["seeds=[0]", "budget.steps=1", "budget.batch=2", "budget.group_size=2", "world.entities=120",
            "world.eval_worlds=[]", "evaluation.max_tasks=2", "evaluation.trials=1", "warm_start.demos=1",
            "warm_start.epochs=1", "arms.sim-controlled.schedule=gentle"]
    args = [a for s in sets for a in ("--set", s)]
    out = _run(wheel_venv, "-m", "simrl", "ablate", "quickstart", *args, "--jobs", "2", "-o", "abl", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / "abl" / "report.md").is_file()
    assert (tmp_path / "abl" / "sim-controlled" / "seed-0" / "final.pt").is_file()

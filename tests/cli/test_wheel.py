"""A non-editable wheel install runs from any directory: the shipped worlds, recipes and schedules are in
the wheel and found by name (the README's `simrl ablate quickstart --set seeds=[0]`), and pip installs what
the wheel declares: torch is not in the fresh venv until pip resolves the wheel's dependencies (torch 2.13.0
from a local wheel file, the other dependencies seen through links to this interpreter's packages), and the
quickstart then trains 2 steps. Marked slow (about 2-4 minutes on 2 cores: torch is unpacked, then trained)."""

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


TORCH = "2.13.0"
LEFT_OUT = ("torch", "functorch", "torchgen", "simrl", "__editable__")
"""Entries of this interpreter's package folders the fresh venv does not see: torch (pip must install it
because the wheel declares it) and simrl itself (the wheel is what is tested)."""


def _torch_wheels() -> Path | None:
    """A folder of PIP_FIND_LINKS holding a torch {TORCH} wheel for this interpreter, or None."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        path = Path(folder.removeprefix("file://"))
        if path.is_dir() and any(path.glob(f"torch-{TORCH}*-{tag}-*.whl")):
            return path
    return None


def _mirror(folder: Path) -> Path:
    """``folder`` with a link to every entry of this interpreter's package folders but :data:`LEFT_OUT`."""
    folder.mkdir()
    sites = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    sites += [line.strip() for p in sites for f in Path(p).glob("*.pth") if not f.name.startswith("__editable__")
              for line in f.read_text().splitlines() if line.strip().startswith("/") and Path(line.strip()).is_dir()]
    for site_dir in dict.fromkeys(sites):
        for entry in Path(site_dir).iterdir():
            top = entry.name.split("-")[0].split(".")[0].lower()
            if top not in LEFT_OUT and not entry.name.startswith("__editable__") and entry.suffix != ".pth" \
                    and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with simrl installed from a wheel of this checkout by pip, dependencies resolved: torch
    from a local wheel, the others already there (links to this interpreter's packages, torch left out)."""
    if not _setuptools_ok():
        pytest.skip("building the wheel offline needs setuptools>=77 in this environment (pyproject's build-system)")
    torch_wheels = _torch_wheels()
    if torch_wheels is None:
        pytest.skip(f"no local torch {TORCH} wheel in PIP_FIND_LINKS (the fresh venv installs it offline)")
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, cwd=tmp)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "_deps.pth").write_text(f"{_mirror(tmp / 'deps')}\n")
    clean = _clean_env()  # no PYTHONPATH: a source tree on it (with its simrl.egg-info) would count as installed
    missing = subprocess.run([str(py), "-c", "import torch"], capture_output=True, env=clean)
    assert missing.returncode != 0, "torch is visible in the fresh venv before simrl is installed"
    wheel = next((tmp / "dist").glob("simrl-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index",
                    "--find-links", str(torch_wheels), str(wheel)], check=True, capture_output=True, env=clean)
    return env_dir


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "python"), *args], capture_output=True, text=True, cwd=cwd,
                          env=_clean_env(), timeout=600)


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


def test_the_wheel_installs_torch_and_trains_the_quickstart_2_steps(wheel_venv, tmp_path):
    version = _run(wheel_venv, "-c", "import torch; print(torch.__version__, torch.__file__)", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(TORCH), version.stderr
    assert str(wheel_venv) in version.stdout  # installed by pip into the venv, as the wheel declares it
    out = _run(wheel_venv, "-m", "simrl", "train", "quickstart", "--set", "budget.steps=2", "--set", "seeds=[0]",
               "--no-evaluate", "-o", "q", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    finals = list((tmp_path / "q").glob("*/seed-0/final.pt"))
    assert finals, sorted(str(p) for p in (tmp_path / "q").rglob("*"))[:40]

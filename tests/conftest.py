"""Shared fixtures: small generated worlds (made once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simrl.world import generate_world, load_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "worlds" / "tiny.yaml"
DEFAULT = ROOT / "worlds" / "default.yaml"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The tiny spec, seed 3."""
    out = tmp_path_factory.mktemp("worlds") / "tiny-3"
    generate_world(load_spec(TINY), 3, out)
    return out


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """The default spec at 800 entities, seed 7: big enough for every task template."""
    out = tmp_path_factory.mktemp("worlds") / "default-7"
    generate_world(load_spec(DEFAULT), 7, out, entities=800)
    return out

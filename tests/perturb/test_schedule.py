"""Schedules: validation names the field; curricula give the documented rates; shipped schedules load."""

from __future__ import annotations

import math

import pytest

from simrl.errors import SpecError
from simrl.perturb import PerturbationType, Schedule, load_schedule, parse_schedule, perturbation_class, rate
from simrl.perturb.schedule import SHIPPED, Constant, Cosine, ExpRamp, Linear, Step


def _error(data) -> str:
    with pytest.raises(SpecError) as err:
        parse_schedule(data)
    return str(err.value)


@pytest.mark.parametrize(("data", "field"), [
    ({"name": "x", "perturbations": {"rate_limit": {"rate": {"kind": "exp_ramp", "start": 0, "end": 2}}}},
     "perturbations.rate_limit.rate.end:"),
    ({"name": "x", "perturbations": {"bogus": {"rate": 0.1}}}, "perturbations.bogus:"),
    ({"name": "x", "perturbations": {"timeout": {"rate": 0.1, "colour": "red"}}}, "perturbations.timeout.colour:"),
    ({"name": "x", "perturbations": {"partial_response": {"rate": 0.1, "params": {"keep_fraction": 1.5}}}},
     "perturbations.partial_response.params.keep_fraction:"),
    ({"name": "x", "perturbations": {"rate_limit": {"rate": 0.1, "params": {"retry_after": [5, 1]}}}},
     "perturbations.rate_limit.params:"),
    ({"name": "x", "perturbations": {"schema_drift": {"rate": 0.1, "params": {"typo": 1}}}},
     "perturbations.schema_drift.params.typo: unknown parameter"),
    ({"name": "x", "perturbations": {"empty_result": {"rate": {"kind": "step", "boundaries": [0.5], "values": [0.1]}}}},
     "perturbations.empty_result.rate.values:"),
    ({"name": "x", "perturbations": {"empty_result": {"rate": {"kind": "wavy"}}}}, "perturbations.empty_result.rate:"),
    ({"name": "x", "perturbations": {"timeout": {"rate": 0.1, "turns": {"first": 4, "last": 1}}}},
     "perturbations.timeout.turns:"),
    ({"name": "x", "perturbations": {"timeout": {"rate": 0.1, "max_per_episode": -1}}},
     "perturbations.timeout.max_per_episode:"),
    ({"name": "x", "perturbations": {"outage": {"rate": 0.1}}}, "perturbations.outage: an agent cannot recover"),
    ({"name": "Bad Name"}, "name:"),
    ({"name": "x", "cooldown_calls": -1}, "cooldown_calls:"),
    ({"name": "x", "perturbatons": {}}, "perturbatons: unknown field"),
])
def test_validation_errors_name_the_field(data, field):
    assert field in _error(data)


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="schedule not found"):
        load_schedule(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_schedule(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_schedule(tmp_path / "list.yaml")


def test_curricula():
    assert Constant(rate=0.2).at(0.7) == 0.2
    assert Linear(kind="linear", start=0.1, end=0.5).at(0.5) == pytest.approx(0.3)
    cos = Cosine(kind="cosine", start=0.0, end=0.4)
    assert [cos.at(p) for p in (0, 0.5, 1)] == pytest.approx([0.0, 0.2, 0.4])
    step = Step(kind="step", boundaries=[0.25, 0.75], values=[0.0, 0.1, 0.3])
    assert [step.at(p) for p in (0, 0.25, 0.5, 0.75, 1)] == [0.0, 0.1, 0.1, 0.3, 0.3]
    ramp = ExpRamp(kind="exp_ramp", start=0.0, end=0.5)  # ZeroSearch: (4^p - 1) / 3, 0 -> 0.5
    assert [rate(ramp, p) for p in (0, 0.5, 1)] == pytest.approx([0.0, 0.5 / 3, 0.5])
    assert rate(ramp, 0.5) == pytest.approx(0.5 * (math.sqrt(4) - 1) / 3)  # a third of the way at half time
    assert ExpRamp(kind="exp_ramp", start=0.2, end=0.2).at(0.3) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="progress"):
        ramp.at(1.5)
    assert "base 1" in _error({"name": "x", "perturbations": {"timeout": {"rate": {
        "kind": "exp_ramp", "start": 0, "end": 1, "base": 1}}}})


def test_number_is_a_constant_rate_and_params_build_the_perturbation():
    sched = parse_schedule({"name": "x", "perturbations": {
        "forced_pagination": {"rate": 0.25, "params": {"page_size": 3}}}})
    assert sched.rates(0.9) == {"forced_pagination": 0.25}
    assert sched.perturbation("forced_pagination").page_size == 3


@pytest.mark.parametrize("name", ["gentle", "mcpmark", "fault-heavy"])
def test_shipped_schedules_load_and_are_recoverable(name):
    sched = load_schedule(name)
    assert sched == load_schedule(SHIPPED / f"{name}.yaml")
    assert sched.perturbations and not sched.allow_unrecoverable
    assert all(perturbation_class(k).recoverable for k in sched.perturbations)
    assert all(0 <= r <= 1 for p in (0, 0.5, 1) for r in sched.rates(p).values())


def test_shipped_schedules_have_their_character():
    mcpmark = load_schedule("mcpmark")
    assert {"partial_response", "forced_pagination"} <= {k.value for k in mcpmark.perturbations}
    assert mcpmark.rates(1.0)["partial_response"] == pytest.approx(0.5)  # ZeroSearch's 0 -> 0.5
    assert "list_members" in mcpmark.perturbations[PerturbationType.partial_response].tools
    faults = {k.value for k in load_schedule("fault-heavy").perturbations}
    assert {"server_error", "rate_limit", "timeout", "schema_drift", "validation_error"} <= faults
    assert max(load_schedule("gentle").rates(1.0).values()) <= 0.1


def test_single_and_unrecoverable():
    assert Schedule.single("outage", allow_unrecoverable=True).perturbation("outage").recoverable is False
    with pytest.raises(ValueError, match="allow_unrecoverable"):
        Schedule.single("outage")

"""World specs: shipped specs load; malformed specs fail with a message naming the field."""

from __future__ import annotations

import pytest
import yaml

from simrl.errors import SpecError
from simrl.world.spec import load_spec, parse_spec
from tests.conftest import DEFAULT, TINY


def test_shipped_specs_load():
    assert load_spec(DEFAULT).name == "default"
    assert load_spec(TINY).entities == 150


@pytest.mark.parametrize("n", [30, 151, 2000, 100_000])
def test_type_counts_sum_to_entities(n):
    counts = load_spec(DEFAULT).type_counts(n)
    assert sum(counts.values()) == n
    assert all(c >= 1 for t, c in counts.items() if t.value in ("country", "city", "person", "organization"))


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"entities": "many"}, "entities", "valid integer"),
    ({"entities": -5}, "entities", "greater than or equal"),
    ({"colour": "blue"}, "colour", "unknown field"),
    ({"tasks": {"qa": {"per_1k_entities": 10, "min": -1}}}, "tasks.qa.min", "greater than or equal"),
    ({"tasks": {"max_hops": 7}}, "tasks.max_hops", "less than or equal"),
    ({"splits": {"train": 0.5, "dev": 0.1, "test": 0.1}}, "splits", "sum to 1"),
    ({"start_year": 2000}, "(top level)", "earlier start_year"),
    ({"relations": {"founders_per_organization": {"min": 3, "max": 1}}},
     "relations.founders_per_organization", "larger than max"),
    ({"mix": {"person": 0, "city": 0}}, "(top level)", "sum to 0"),
    ({"mix": {"dragon": 0.5}}, "mix.dragon", "Input should be"),
])
def test_malformed_spec_names_the_field(patch, field, words):
    data = {"name": "broken", **patch}
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    msg = str(err.value)
    assert f"  {field}:" in msg, msg
    assert words in msg, msg


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text(yaml.safe_dump("just a string"))
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(scalar)

"""Policy files: keyed by layer name, ordered by the workload, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from haqsim import Policy, zoo
from haqsim.errors import PolicyError

WL = zoo.resnet18()


def test_round_trip_and_reorder(tmp_path):
    rng = np.random.default_rng(0)
    policy = Policy(WL.names, rng.integers(2, 9, len(WL)), rng.integers(2, 9, len(WL)),
                    {"summary": {"accuracy": 0.9}})  # fmt: skip
    path = tmp_path / "policy.json"
    policy.to_json(path)
    data = json.loads(path.read_text())
    assert data["layers"]["layer1.0.conv1"] == {
        "w_bits": int(policy.w_bits[1]), "a_bits": int(policy.a_bits[1]),
    }  # fmt: skip
    back = Policy.from_json(path, WL)
    assert np.array_equal(back.w_bits, policy.w_bits) and back.meta["summary"]["accuracy"] == 0.9
    # A file whose layers are listed in another order still maps by name.
    data["layers"] = dict(reversed(list(data["layers"].items())))
    path.write_text(json.dumps(data))
    assert np.array_equal(Policy.from_json(path, WL).a_bits, policy.a_bits)


def test_uniform():
    p = Policy.uniform(WL, 4, 6)
    assert set(p.w_bits.tolist()) == {4} and set(p.a_bits.tolist()) == {6}


def test_positional_form():
    p = Policy.from_dict({"w_bits": [4] * len(WL), "a_bits": [8] * len(WL)}, WL)
    assert p.names == WL.names


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"rows": {}}, "must have 'layers'"),
        ({"layers": {"conv1": {"w_bits": 8}}}, "layer 'conv1' must have 'w_bits' and 'a_bits'"),
        ({"layers": {"conv1": {"w_bits": 8, "a_bits": 8}}}, r"must match workload 'resnet18'"),
        ({"w_bits": [8] * 3, "a_bits": [8] * 3}, r"'w_bits' must have 21 entries"),
        ({"w_bits": [8.5] * 21, "a_bits": [8] * 21}, r"'w_bits' must be integers"),
    ],
)
def test_malformed(data, message):
    with pytest.raises(PolicyError, match=message):
        Policy.from_dict(data, WL)


def test_repeated_names_raise():
    with pytest.raises(PolicyError, match=r"names must be unique, got \['b'\] more than once"):
        Policy(["a", "b", "b"], [8, 4, 2], [8, 4, 2])
    with pytest.raises(PolicyError, match="must be unique"):
        Policy.from_dict({"names": ["a", "a"], "w_bits": [8, 8], "a_bits": [8, 8]})


def test_ordered_as():
    policy = Policy(["a", "b", "c"], [8, 4, 2], [7, 5, 3])
    w, a = policy.ordered_as(["c", "a", "b"])
    assert w.tolist() == [2, 8, 4] and a.tolist() == [3, 7, 5]
    match = (r"policy layer names must match the 3 layers, got 3 names; missing \['d'\], "
             r"unknown \['b'\]")  # fmt: skip
    with pytest.raises(PolicyError, match=match):
        policy.ordered_as(["c", "a", "d"])
    with pytest.raises(PolicyError, match=r"^file layer names must match model X, got 3 names; "
                       r"missing \[\], unknown \['c'\]"):  # fmt: skip
        policy.ordered_as(["a", "b"], "model X", "file")


def test_unreadable_file(tmp_path):
    with pytest.raises(PolicyError, match="must be readable JSON"):
        Policy.from_json(tmp_path / "missing.json", WL)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PolicyError, match="must be readable JSON"):
        Policy.from_json(bad, WL)

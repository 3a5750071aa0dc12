"""LayerTable: construction, derived figures, validation, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from haqsim import LayerKind, LayerTable, conv, linear
from haqsim.errors import WorkloadError
from haqsim.workload import Layer


def small() -> LayerTable:
    return LayerTable.from_layers(
        [
            conv("stem", 3, 8, 3, 32, stride=2, reads_image=True),
            conv("dw", 8, 8, 3, 16, groups=8),
            conv("g", 8, 16, 3, 16, groups=2),
            conv("rect", 16, 16, (1, 5), (1, 16), pad=0),
            linear("fc", 16 * 12, 10),
        ],
        name="small",
    )


def test_kinds_and_shapes_follow_from_arguments():
    t = small()
    assert [LayerKind(k) for k in t.kind] == [
        LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.GROUPED, LayerKind.CONV, LayerKind.LINEAR,
    ]  # fmt: skip
    assert (int(t.out_h[0]), int(t.out_w[0])) == (16, 16)
    assert (int(t.out_h[3]), int(t.out_w[3])) == (1, 12)
    assert t.reads_image.tolist() == [True, False, False, False, False]


def test_macs_and_params_by_hand():
    t = small()
    assert t.macs.tolist() == [
        16 * 16 * 8 * 3 * 9,
        16 * 16 * 8 * 1 * 9,
        16 * 16 * 16 * 4 * 9,
        1 * 12 * 16 * 16 * 5,
        192 * 10,
    ]
    assert t.params.tolist() == [8 * 3 * 9, 8 * 9, 16 * 4 * 9, 16 * 16 * 5, 1920]
    assert t.total_macs == int(t.macs.sum())


def test_json_and_csv_round_trip(tmp_path):
    t = small().with_batch(4)
    path = tmp_path / "w.json"
    t.to_json(path)
    assert LayerTable.from_json(path) == t
    csv_path = tmp_path / "w.csv"
    t.to_csv(csv_path)
    assert LayerTable.from_csv(csv_path, batch=4) == t


def test_columns_are_read_only():
    t = small()
    with pytest.raises(ValueError, match="read-only"):
        t.cin[0] = 5


def test_select_and_getitem():
    t = small()
    sub = t.select([4, 0])
    assert sub.names == ("fc", "stem")
    assert sub[1] == t[0]
    with pytest.raises(IndexError):
        t[9]


def test_kernel_array_columns():
    arr = small().kernel_array()
    assert arr.shape == (5, 13) and arr.dtype == np.int64 and arr.flags.c_contiguous


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cin": [3, 0, 8, 16, 192]}, r"layer 1 \('dw'\) 'cin' must be >= 1, got 0"),
        ({"pad": [-1, 1, 1, 0, 0]}, r"layer 0 \('stem'\) 'pad' must be >= 0, got -1"),
        ({"groups": [1, 8, 3, 1, 1]}, r"'groups' must divide cin and cout, got groups=3"),
        ({"out_h": [15, 16, 16, 1, 1]}, r"'out_h' must equal .* = 16, got 15"),
        ({"kind": [0, 0, 2, 0, 3]}, r"kind 'conv' must have groups=1, got groups=8"),
        ({"kind": [0, 1, 1, 0, 3]}, r"kind 'depthwise' must have groups == cin == cout"),
        ({"names": ["a", "a", "b", "c", "d"]}, r"layer 1 name must be unique, got duplicate 'a'"),
        ({"batch": 0}, r"batch must be a positive integer or None, got 0"),
        ({"batch": True}, r"batch must be a positive integer or None, got True"),
        ({"cout": [8, 8, 16, 16]}, r"column 'cout' must have 5 rows"),
        ({"cin": [3.5, 8, 8, 16, 192]}, r"column 'cin' must hold integers"),
    ],
)
def test_validation_errors(change, message):
    t = small()
    fields = {f: getattr(t, f) for f in ("names", "kind", "cin", "cout", "kh", "kw", "stride",
                                         "pad", "groups", "in_h", "in_w", "out_h", "out_w",
                                         "reads_image", "batch")}  # fmt: skip
    fields.update(change)
    with pytest.raises(WorkloadError, match=message):
        LayerTable(**fields)


def test_linear_rows_must_be_flat():
    t = small()
    fields = {f: getattr(t, f) for f in ("names", "cin", "cout", "kh", "kw", "stride", "pad",
                                         "groups", "in_h", "in_w", "out_h", "out_w",
                                         "reads_image")}  # fmt: skip
    fields["kind"] = [0, 1, 2, 3, 3]
    with pytest.raises(WorkloadError, match=r"layer 3 \('rect'\) a linear layer must have"):
        LayerTable(**fields)


def test_kernel_larger_than_input():
    with pytest.raises(WorkloadError, match="must fit the input"):
        LayerTable.from_layers([conv("big", 3, 3, 7, 3, pad=0)])


def test_empty_and_bad_files(tmp_path):
    with pytest.raises(WorkloadError, match="at least one layer"):
        LayerTable.from_layers([])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WorkloadError, match="must be readable JSON"):
        LayerTable.from_json(bad)
    with pytest.raises(WorkloadError, match="must have a 'layers' list"):
        LayerTable.from_dict({"rows": []})
    with pytest.raises(WorkloadError, match=r"'kind' must be one of"):
        LayerTable.from_dict({"layers": [{**small().to_dict()["layers"][0], "kind": "lstm"}]})


def _row(**change: object) -> dict:
    """The first row of ``small()`` as a workload dict row, with ``change`` applied."""
    row = {**small().to_dict()["layers"][0], **change}
    return {k: v for k, v in row.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], r"workload must be an object with a 'layers' list, got list"),
        ({"layers": [], "colour": 1}, r"unknown keys \['colour'\]; known keys are \['name'"),
        ({"layers": {"a": 1}}, r"'layers' must be a list of layer objects, got dict"),
        ({"layers": [_row()], "name": 3}, r"workload 'name' must be a string, got 3"),
        ({"layers": [1, 2]}, r"layer 0 must be an object mapping field names to values, got 1"),
        ({"layers": [_row(kind=7)]},
         r"layer 0 \('stem'\) 'kind' must be one of 'conv' \(0\), .* 'linear' \(3\), got 7"),
        ({"layers": [_row(kind=True)]}, r"layer 0 \('stem'\) 'kind' must be one of .*got True"),
        ({"layers": [_row(cin="abc")]}, r"layer 0 \('stem'\) 'cin' must be an integer, got 'abc'"),
        ({"layers": [_row(cin=3.5)]}, r"layer 0 \('stem'\) 'cin' must be an integer, got 3.5"),
        ({"layers": [_row(pad=True)]}, r"layer 0 \('stem'\) 'pad' must be an integer, got True"),
        ({"layers": [_row(cin=2**70)]}, r"'cin' must be an integer in \[-9223372036854775808"),
        ({"layers": [_row(reads_image="false")]},
         r"'reads_image' must be true or false \(or 1 or 0\), got 'false'"),
        ({"layers": [_row(stride=None)]},
         r"layer 0 \('stem'\) must have fields .* missing \['stride'\]"),
        ({"layers": [_row(colour="red")]},
         r"layer 0 \('stem'\) has unknown fields \['colour'\]; known fields are \['name', 'kind'"),
    ],
)  # fmt: skip
def test_from_dict_bad_input_names_layer_field_and_value(data, message):
    with pytest.raises(WorkloadError, match=message):
        LayerTable.from_dict(data)


def test_from_dict_accepts_whole_floats_kind_codes_and_derived_fields():
    t = small()
    rows = t.to_dict()["layers"]
    rows[0] = {**rows[0], "cin": 3.0, "kind": 0, "reads_image": 1, "macs": 1, "params": 2}
    assert LayerTable.from_dict({"name": "small", "layers": rows}) == t


def test_direct_columns_are_checked():
    t = small()
    fields = {f: getattr(t, f) for f in ("names", "cin", "cout", "kh", "kw", "stride", "pad",
                                         "groups", "in_h", "in_w", "out_h", "out_w",
                                         "reads_image", "kind")}  # fmt: skip
    for change, message in [
        ({"kind": [0, 1, 2, 0, 300]}, r"column 'kind' must hold codes .*got 300 at row 4"),
        ({"cin": ["3", 8, 8, 16, 192]}, r"column 'cin' must hold integers: row 0 .*got '3'"),
        ({"cin": [np.nan, 8, 8, 16, 192]}, r"column 'cin' must hold integers: row 0 .*got nan"),
        ({"cin": [3, 8, 8, 16, 1e30]}, r"row 4 must be an integer in \[.*got 1e\+30"),
    ]:
        with pytest.raises(WorkloadError, match=message):
            LayerTable(**{**fields, **change})
    with pytest.raises(WorkloadError, match=r"Layer 'kind' must be one of .*got 7"):
        Layer("x", 7, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1)  # type: ignore[arg-type]


def test_bad_json_files_name_the_file(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"layers": [{"name": "a", "kind": 7}]}')
    with pytest.raises(WorkloadError, match=r"workload file '.*net.json': layer 0 \('a'\)"):
        LayerTable.from_json(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WorkloadError, match="must be readable JSON"):
        LayerTable.from_json(path)


def _csv(drop: str | None = None, edit: tuple[str, str] | None = None) -> str:
    lines = small().to_csv().splitlines()
    header = lines[0].split(",")
    if drop is not None:
        k = header.index(drop)
        lines = [",".join(c for j, c in enumerate(line.split(",")) if j != k) for line in lines]
    if edit is not None:
        column, value = edit
        k = header.index(column)
        cells = lines[1].split(",")
        cells[k] = value
        lines[1] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_csv(drop="reads_image"),
         r"workload CSV must have columns \['name', .*missing \['reads_image'\]"),
        (_csv(drop="cin"), r"missing \['cin'\]"),
        (_csv().replace("macs", "colour", 1), r"unknown columns \['colour'\]; known columns are"),
        (_csv().replace("macs", "cin", 1), r"must name each of its columns once, got \['cin'\]"),
        (_csv(edit=("cin", "abc")), r"layer 0 \('stem'\) 'cin' must be an integer, got 'abc'"),
        (_csv(edit=("cin", "3.5")), r"layer 0 \('stem'\) 'cin' must be an integer, got '3.5'"),
        (_csv(edit=("kind", "7")), r"layer 0 \('stem'\) 'kind' must be one of .*got '7'"),
        (_csv(edit=("reads_image", "maybe")), r"'reads_image' must be one of \['1', 'true'"),
        (_csv() + "x,conv,1\n", r"layer 5 \('x'\) must have one value per header column .*missing"),
        (_csv() + "x" + ",1" * 20 + "\n", r"layer 5 \('x'\) must have one value .*got extra"),
        ("\n\n", r"must start with a header row"),
    ],
)  # fmt: skip
def test_from_csv_bad_input(text, message):
    with pytest.raises(WorkloadError, match=message):
        LayerTable.from_csv(text)


def test_from_csv_reads_its_own_output_and_names_the_file(tmp_path):
    assert LayerTable.from_csv(_csv(), name="small") == small()
    path = tmp_path / "net.csv"
    path.write_text(_csv(drop="kind"))
    with pytest.raises(WorkloadError, match=r"workload file '.*net.csv': .*missing \['kind'\]"):
        LayerTable.from_csv(path)


@pytest.mark.parametrize(
    ("cin", "message"),
    [
        (np.array([2**63, 8, 8, 16, 192], np.uint64), r"row 0 must be an integer in \[.*got 9223"),
        ([3, 8, 8, 16, 2**70], r"row 4 must be an integer in \[.*got 1180591620717411303424$"),
        (np.array([3, 8, True, 16, 192], object), r"row 2 must be an integer, got True$"),
        ([3, 8, 8, 1 + 2j, 192], r"row 0 must be an integer, got \(3\+0j\)$"),
        ([3, 8, 8, 16, -np.inf], r"row 4 must be an integer, got -inf$"),
    ],
)
def test_columns_must_be_int64_whole_numbers(cin, message):
    t = small()
    others = ("names", "cout", "kh", "kw", "stride", "pad", "groups", "in_h", "in_w", "out_h")
    fields = {f: getattr(t, f) for f in (*others, "out_w", "reads_image", "kind")}
    with pytest.raises(WorkloadError, match=r"^column 'cin' must hold integers: " + message):
        LayerTable(**fields, cin=cin)
    assert LayerTable(**fields, cin=np.array([3.0, 8, 8, 16, 192])) == t

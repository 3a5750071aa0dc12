"""Hardware configs: presets, validation, files, evolve."""

from __future__ import annotations

import json

import attrs
import pytest

import haqsim
from haqsim import BitFusionConfig, BitSerialConfig
from haqsim.errors import HardwareError


def test_presets_load_with_documented_values():
    edge = haqsim.preset("bismo-edge")
    assert (edge.dm, edge.dn, edge.dk, edge.fetch_bits_per_cycle, edge.clock_hz, edge.batch) == (
        8, 8, 256, 64, 120e6, 1,
    )  # fmt: skip
    cloud = haqsim.preset("bismo-cloud")
    assert (cloud.dm, cloud.dk, cloud.fetch_bits_per_cycle, cloud.clock_hz, cloud.batch) == (
        16, 256, 256, 215e6, 16,
    )  # fmt: skip
    bf = haqsim.preset("bitfusion")
    assert (bf.n_rows, bf.m_cols, bf.wbuf_bytes, bf.ibuf_bytes, bf.obuf_bytes) == (
        16, 32, 65536, 32768, 16384,
    )  # fmt: skip
    assert bf.dram_bits_per_cycle == 192 and bf.clock_hz == 500e6
    assert bf.core_pj_per_fu_cycle == 0.45918  # about 235.1 pJ per cycle for the 16 x 32 array
    assert bf.core_pj_per_fu_cycle * 16 * 32 == pytest.approx(235.104, rel=1e-4)
    assert haqsim.preset("bitfusion-wide").dram_bits_per_cycle == 4096
    assert haqsim.preset("stripes").w_bits_per_pass == 8
    assert haqsim.preset("loom").a_bits_per_pass == 2
    assert set(haqsim.preset_names()) >= {"bismo-edge", "bismo-cloud", "bitfusion",
                                          "bitfusion-wide", "stripes", "loom"}  # fmt: skip


BRAM36_BYTES = 4608
_BISMO = {"kind": "bitserial", "dk": 256, "w_bits_per_pass": 1, "a_bits_per_pass": 1,
          "min_bits": 1, "max_bits": 8, "dpu_pj_per_cycle": 1.0,
          "buffer_read_pj_per_bit": 0.0594744, "buffer_write_pj_per_bit": 0.1137041,
          "dram_pj_per_bit": 15.0, "result_bits": 32}  # fmt: skip
_VU9P = {**_BISMO, "dm": 16, "dn": 16, "clock_hz": 215e6, "fetch_bits_per_cycle": 256,
         "buffer_bytes": 2160 * BRAM36_BYTES, "batch": 16}  # fmt: skip
_BITFUSION = {"kind": "bitfusion", "n_rows": 16, "m_cols": 32, "clock_hz": 500e6,
              "wbuf_bytes": 64 * 1024, "ibuf_bytes": 32 * 1024, "obuf_bytes": 16 * 1024,
              "dram_bits_per_cycle": 192, "batch": 16, "min_bits": 1, "max_bits": 16,
              "core_pj_per_fu_cycle": 0.45918, "wbuf_read_pj_per_bit": 0.0213657,
              "wbuf_write_pj_per_bit": 0.0289162, "ibuf_read_pj_per_bit": 0.0594744,
              "ibuf_write_pj_per_bit": 0.1137041, "obuf_read_pj_per_bit": 0.0331553,
              "obuf_write_pj_per_bit": 0.0730841, "dram_pj_per_bit": 15.0}  # fmt: skip
#: Every field of every shipped preset, from COST_MODELS.md (BRAM36 blocks of 4,608 bytes); the
#: Stripes and Loom variants keep the cloud array and scale the DPU energy with the bits a pass
#: handles (8 x 1 and 2 x 2 bit products per lane).
GOLDEN_PRESETS = {
    "bismo-edge": {
        **_BISMO,
        "dm": 8,
        "dn": 8,
        "clock_hz": 120e6,
        "fetch_bits_per_cycle": 64,
        "buffer_bytes": 140 * BRAM36_BYTES,
        "batch": 1,
    },
    "bismo-cloud": _VU9P,
    "stripes": {**_VU9P, "w_bits_per_pass": 8, "dpu_pj_per_cycle": 8.0},
    "loom": {**_VU9P, "w_bits_per_pass": 2, "a_bits_per_pass": 2, "dpu_pj_per_cycle": 4.0},
    "bitfusion": _BITFUSION,
    "bitfusion-wide": {**_BITFUSION, "dram_bits_per_cycle": 4096},
}


def test_every_preset_field_is_the_documented_value():
    assert sorted(GOLDEN_PRESETS) == haqsim.preset_names()
    for name, golden in GOLDEN_PRESETS.items():
        assert haqsim.preset(name).to_dict() == {"name": name, **golden}, name


@pytest.mark.parametrize("name", haqsim.preset_names())
def test_toml_and_json_round_trip(tmp_path, name):
    hw = haqsim.preset(name)
    toml_path = tmp_path / "accel.toml"
    toml_path.write_text(hw.to_toml())
    assert haqsim.load(toml_path) == hw
    json_path = tmp_path / "accel.json"
    json_path.write_text(json.dumps(hw.to_dict()))
    assert haqsim.load(json_path) == hw
    assert haqsim.preset(str(json_path)) == hw


def test_evolve_for_sweeps_revalidates():
    hw = haqsim.preset("bitfusion")
    wide = attrs.evolve(hw, dram_bits_per_cycle=1024)
    assert wide.dram_bits_per_cycle == 1024 and hw.dram_bits_per_cycle == 192
    with pytest.raises(HardwareError, match="'dram_bits_per_cycle' must be a positive integer"):
        attrs.evolve(hw, dram_bits_per_cycle=0)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (BitSerialConfig, {"dm": -1}, "'dm' must be a positive integer, got -1"),
        (BitSerialConfig, {"clock_hz": 0}, "'clock_hz' must be a positive number, got 0"),
        (BitSerialConfig, {"min_bits": 4, "max_bits": 2}, "min_bits must be <= max_bits"),
        (BitSerialConfig, {"buffer_bytes": 64}, "buffer_bytes must hold one double-buffered"),
        (BitSerialConfig, {"dram_pj_per_bit": -1.0}, "'dram_pj_per_bit' must be a number >= 0"),
        (BitFusionConfig, {"n_rows": 2.5}, "'n_rows' must be a positive integer, got 2.5"),
        (BitFusionConfig, {"max_bits": 99}, "max_bits must be <= 64, got 99"),
    ],
)
def test_invalid_configs(cls, kwargs, message):
    base = haqsim.preset("bismo-edge" if cls is BitSerialConfig else "bitfusion").to_dict()
    base.pop("kind")
    base.update(kwargs)
    with pytest.raises(HardwareError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(**base)


def test_bad_files(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(HardwareError, match="must be readable"):
        haqsim.load(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = 'bitfusion'\nn_rows = [")
    with pytest.raises(HardwareError, match="must be valid TOML or JSON"):
        haqsim.load(bad)
    wrong_kind = tmp_path / "k.toml"
    wrong_kind.write_text("kind = 'systolic'\n")
    with pytest.raises(HardwareError, match="'kind' must be one of \\['bitfusion', 'bitserial'\\]"):
        haqsim.load(wrong_kind)
    unknown_field = tmp_path / "u.json"
    data = haqsim.preset("bismo-edge").to_dict() | {"sram_kb": 3}
    unknown_field.write_text(json.dumps(data))
    with pytest.raises(HardwareError, match=r"has no field\(s\) \['sram_kb'\]"):
        haqsim.load(unknown_field)
    incomplete = tmp_path / "i.toml"
    incomplete.write_text("kind = 'bitserial'\ndm = 8\n")
    with pytest.raises(HardwareError, match="BitSerialConfig"):
        haqsim.load(incomplete)


def test_user_file_runs_through_estimate(tmp_path):
    path = tmp_path / "my_accel.toml"
    path.write_text(
        "kind = 'bitserial'\ndm = 4\ndn = 4\ndk = 128\nclock_hz = 100e6\n"
        "fetch_bits_per_cycle = 32\nbuffer_bytes = 65536\n"
    )
    hw = haqsim.load(path)
    assert hw.name == "my_accel"
    rep = haqsim.estimate(haqsim.zoo.mobilenet_v1(), hw, 4, 4)
    assert rep.total_cycles > 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("accel.json", b"[1, 2]", "must hold one table of keys"),
        ("accel.toml", b"\xff\xfe kind", "must be readable UTF-8 text"),
        ("accel.json", b"{kind: ", "must be valid TOML or JSON"),
    ],
)
def test_bad_hardware_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(HardwareError, match=message):
        haqsim.load(path)


def test_preset_takes_files_and_a_missing_one_is_not_an_unknown_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edge.json").write_text(json.dumps(haqsim.preset("bismo-edge").to_dict()))
    assert haqsim.preset("edge.json") == haqsim.preset("bismo-edge")
    for value, problem in [
        ("missing.toml", "does not exist"),
        ("sub/missing", "must end in .toml or .json"),
    ]:
        message = f"hardware file {value!r} {problem}; valid hardware presets are: bismo-cloud, "
        with pytest.raises(HardwareError) as info:
            haqsim.preset(value)
        assert str(info.value).startswith(message)
        with pytest.raises(HardwareError, match=problem):
            haqsim.estimate(haqsim.zoo.alexnet(), value)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(HardwareError, match=r"hardware file 'dir\.toml' is not a file"):
        haqsim.preset("dir.toml")

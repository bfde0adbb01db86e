"""Tests of the fast path's plan: the rules, the CPU class, the shipped tables, the calibration and its cache."""

import json
import os

import pytest
import torch

from inference import conv_plan, fast_path, fast_path_calibration
from training.networks import Generator


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMODGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(conv_plan.PLAN_VARIABLE, raising=False)
    conv_plan.forget_loaded_plans()
    yield
    conv_plan.forget_loaded_plans()


def test_rules_are_the_measured_avx512_thresholds():
    assert conv_plan.rule("conv", (1, 256, 128, 128), 256) == "winograd4"
    assert conv_plan.rule("conv", (1, 128, 128, 128), 256) == "direct"  # fewer than 256 input channels
    assert conv_plan.rule("conv", (1, 512, 4, 4), 512) == "direct"  # below 8 px
    assert conv_plan.rule("conv", (1, 512, 32, 32), 512, float32=False) == "direct"  # bfloat16: no Winograd
    # The modulated weight where it is smaller than the activation, at batch 1 only.
    assert conv_plan.rule("synth", (1, 64, 512, 512), 64) == "weight-direct"
    assert conv_plan.rule("synth", (1, 512, 32, 32), 512) == "activation-winograd4"
    assert conv_plan.rule("synth", (2, 64, 512, 512), 64) == "activation-direct"
    assert conv_plan.rule("synth_up", (1, 128, 256, 256), 64) == "weight-transposed"


def test_variants_respect_batch_and_dtype():
    assert all(v.startswith("activation-") for v in conv_plan.variants("synth", (2, 8, 8, 8)))
    assert "weight-polyphase" in conv_plan.variants("synth_up", (1, 8, 8, 8))
    assert not any("winograd" in v or "nnpack" in v for v in conv_plan.variants("conv", (1, 8, 8, 8), False))
    for kind in conv_plan.KINDS:
        for n in (1, 3):
            x_shape = (n, 512, 16, 16)
            assert conv_plan.rule(kind, x_shape, 512) in conv_plan.variants(kind, x_shape)


@pytest.mark.parametrize("cap,isa,want", [("AVX512", "", "avx512"), ("AVX512", "AVX2", "avx2"),
                                          ("AVX512", "avx512_core_amx", "avx512"), ("AVX2", "", "avx2"),
                                          ("AVX2", "SSE41", "other"), ("DEFAULT", "", "other")])
def test_cpu_class_follows_aten_and_onednn_limits(monkeypatch, cap, isa, want):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: cap)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert conv_plan.cpu_class() == want


def test_machine_key_separates_thread_counts_and_isa_limits(monkeypatch):
    base = conv_plan.cache_path()
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert conv_plan.cache_path() != base
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert conv_plan.cache_path() != base
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert conv_plan.cache_path() == base
    assert base.startswith(os.environ["COMODGAN_CACHE_DIR"])


def test_shipped_tables_hold_valid_variants():
    with open(conv_plan.TABLE_PATH, encoding="utf-8") as f:
        tables = json.load(f)
    assert "avx2" in tables
    for cls, entry in tables.items():
        assert entry["choices"] and all(conv_plan._valid(k, v) for k, v in entry["choices"].items()), cls
        assert set(entry["choices"]) <= set(entry["ms"])


def test_choose_spends_memory_only_for_time():
    times = {"a": 1.00, "b": 1.02, "c": 1.5}
    assert fast_path_calibration._choose(times, {"a": 400, "b": 100, "c": 0}, 0.03) == "b"  # 2 % slower, leaner
    assert fast_path_calibration._choose(times, {"a": 400, "b": 100, "c": 0}, 0.01) == "a"
    assert fast_path_calibration._choose(times, {"a": 0, "b": 100, "c": 0}, 0.03) == "a"


def _tiny():
    torch.manual_seed(0)
    return fast_path.attach(Generator(img_resolution=32, channel_base=256, channel_max=16).eval())


def test_calibration_is_cached_read_back_and_used(monkeypatch):
    G = _tiny()
    assert conv_plan.current_plan().source in ("rules", "table")
    result = fast_path_calibration.calibrate(G, batches=(1,), repeats=1)
    keys = {conv_plan.layer_key(k, s, c) for k, _, s, c in fast_path_calibration.planned_layers(G)}
    assert set(result["choices"]) == keys
    assert all(result["choices"][k] in result["ms"][k] for k in keys)
    # Force a choice that the rules would not make, to see it used.
    key = conv_plan.layer_key("synth", (1, 16, 8, 8), 16)
    result["choices"][key] = "weight-winograd2"
    path = fast_path_calibration.save_calibration(result)
    assert path == conv_plan.cache_path() and json.load(open(path))["machine"] == conv_plan.machine()
    plan = conv_plan.current_plan()
    assert plan.source == "calibration" and plan.variant("synth", (1, 16, 8, 8), 16) == "weight-winograd2"
    monkeypatch.setenv(conv_plan.PLAN_VARIABLE, "rules")
    assert conv_plan.current_plan().variant("synth", (1, 16, 8, 8), 16) == conv_plan.rule("synth", (1, 16, 8, 8), 16)
    monkeypatch.delenv(conv_plan.PLAN_VARIABLE)
    img, mask = torch.zeros([1, 3, 32, 32]), torch.ones([1, 1, 32, 32])
    mask[..., 8:24, 8:24] = 0
    z = torch.randn([1, 512])
    with torch.no_grad():
        ref = G(img, mask, z, noise_mode="const", impl="ref")
        fast = G(img, mask, z, noise_mode="const")
    assert fast_path._caches[G][torch.float32].plan is plan
    assert (fast - ref).abs().max().item() <= 1e-4


def test_bad_files_and_settings_are_named(monkeypatch):
    path = conv_plan.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(conv_plan.PlanError, match=r"calibration-.*\.json: unreadable fast-path calibration"):
        conv_plan.current_plan()
    with open(path, "w") as f:
        json.dump({"choices": {"conv 8 8 8 8 1": "fft"}}, f)
    conv_plan.forget_loaded_plans()
    with pytest.raises(conv_plan.PlanError, match="not a fast-path calibration.*delete it to recalibrate"):
        conv_plan.current_plan()
    monkeypatch.setenv(conv_plan.PLAN_VARIABLE, "fastest")
    with pytest.raises(conv_plan.PlanError, match="COMODGAN_FAST_PLAN='fastest': must be one of rules"):
        conv_plan.current_plan()


def test_a_table_entry_this_torch_cannot_run_falls_back_to_the_rules(monkeypatch):
    plan = conv_plan.Plan({conv_plan.layer_key("conv", (1, 256, 64, 64), 256): "nnpack"})
    monkeypatch.setattr(conv_plan, "nnpack_available", lambda: False)
    assert plan.variant("conv", (1, 256, 64, 64), 256) == "winograd4"
    monkeypatch.setattr(conv_plan, "nnpack_available", lambda: True)
    assert plan.variant("conv", (1, 256, 64, 64), 256) == "nnpack"

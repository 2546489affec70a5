"""Branch separation (CFG), the step counter, ThresholdSchedule (JSON shared with C++) and warm-up."""
import copy
import json
import pickle

import numpy as np
import pytest

import lite_attention as la
from lite_attention import LiteAttention, ThresholdSchedule
from lite_attention import _ext
from conftest import randn, reference


def drifting(step, L=160, seed=0, H=2, D=32):
    base = randn((1, L, H, D), seed)
    x = base + 0.05 * randn(base.shape, 100 + step)
    return x, x, randn(base.shape, seed + 1)


def test_branches_keep_separate_states():
    cfg = LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    cond, uncond = LiteAttention(threshold=-1.0, cpu_tile=(16, 16)), LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    for step in range(4):
        qc = drifting(step, seed=0)
        qu = drifting(step, seed=50)
        a = cfg(*qc, branch="cond")
        b = cfg(*qu, branch="uncond")
        np.testing.assert_array_equal(a, cond(*qc))
        np.testing.assert_array_equal(b, uncond(*qu))
        assert cfg.step == step  # both branches of a denoising step share the step
    assert set(cfg.branches) == {"cond", "uncond"}
    np.testing.assert_array_equal(cfg.state("cond").read_mask(), cond.state().read_mask())
    np.testing.assert_array_equal(cfg.state("uncond").read_mask(), uncond.state().read_mask())
    assert not np.array_equal(cfg.state("cond").read_mask(), cfg.state("uncond").read_mask())
    assert cfg.stats_for("uncond").sparsity == uncond.stats.sparsity
    cfg.reset_skip_state("cond")
    assert cfg.stats_for("cond").calls == 0 and cfg.stats_for("uncond").calls == 4


def test_step_counter_auto_and_set():
    attn = LiteAttention()
    q = randn((1, 32, 1, 16))
    assert attn.step == 0
    attn(q, q, q)
    assert attn.step == 0  # the step of the last call
    attn(q, q, q)
    assert attn.step == 1
    attn.step = 10
    attn(q, q, q, branch="cond")
    attn(q, q, q, branch="uncond")
    assert attn.step == 10
    attn(q, q, q, branch="cond")
    assert attn.step == 11
    manual = LiteAttention(auto_step=False)
    for _ in range(3):
        manual(q, q, q)
    assert manual.step == 0
    with pytest.raises(ValueError, match="step"):
        attn.step = -1


def test_schedule_json_matches_cpp_and_roundtrips(tmp_path):
    s = ThresholdSchedule([-20.0, -12.5, -8.0, float("-inf")], warmup_steps=2)
    assert json.loads(s.to_json()) == json.loads(_ext.schedule_to_json(s.thresholds, s.warmup_steps))
    # The C++ reader reads what Python writes, and Python reads what C++ writes.
    thresholds, warmup = _ext.schedule_from_json(s.to_json())
    assert thresholds == s.thresholds and warmup == 2
    assert ThresholdSchedule.from_json(_ext.schedule_to_json(s.thresholds, 2)) == s
    path = tmp_path / "schedule.json"
    s.save(path)
    assert ThresholdSchedule.load(path) == s
    assert s.threshold(0) == -20.0 and s.threshold(3) == float("-inf") and s.threshold(100) == float("-inf")
    assert s.is_warmup(1) and not s.is_warmup(2)
    with pytest.raises(ValueError, match="thresholds"):
        ThresholdSchedule([-1.0, 2.0])
    with pytest.raises(ValueError, match="warmup_steps"):
        ThresholdSchedule([-1.0], warmup_steps=-1)
    with pytest.raises(ValueError, match="schedule"):
        ThresholdSchedule.from_json("{not json")


def test_schedule_json_is_standard_and_both_readers_agree():
    s = ThresholdSchedule([-3.0, float("-inf")], warmup_steps=1)

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    for text in (s.to_json(), _ext.schedule_to_json(s.thresholds, 1)):
        assert json.loads(text, parse_constant=reject) == {"warmup_steps": 1, "thresholds": [-3.0, float("-inf")]}
    # What both accept, read alike (a repeated member keeps its last value; 2.0 is the integer 2).
    for text in ('{"thresholds": [-1], "thresholds": [-2, -Infinity], "warmup_steps": 2.0, "note": null}',
                 '{"meta": ["]", {"a": true}], "warmup\\u005fsteps": 1, "thresholds": [-1e999]}'):
        python = ThresholdSchedule.from_json(text)
        assert (python.thresholds, python.warmup_steps) == tuple(_ext.schedule_from_json(text)), text
    # What both reject, each naming the field.
    for text, field in (('{"thresholds": ["-5"]}', "thresholds"), ('{"thresholds": -5}', "thresholds"),
                        ('{"thresholds": [-1], "warmup_steps": "2"}', "warmup_steps"),
                        ('{"thresholds": [-1], "warmup_steps": true}', "warmup_steps"),
                        ('{"thresholds": [-1], "warmup_steps": 2.5}', "warmup_steps"),
                        ('{"thresholds": [-1], "warmup_steps": 3000000000}', "warmup_steps")):
        with pytest.raises((TypeError, ValueError), match=f"^{field}: |{field}"):
            ThresholdSchedule.from_json(text)
        with pytest.raises((TypeError, ValueError), match=f"{field}|schedule"):
            _ext.schedule_from_json(text)


def test_schedule_takes_numpy_and_torch_scalars():
    assert ThresholdSchedule(np.float32(-5)).thresholds == [-5.0]
    assert ThresholdSchedule(np.array([-5.0, -2.0]), warmup_steps=np.int64(1)).warmup_steps == 1
    torch = pytest.importorskip("torch")
    assert ThresholdSchedule(torch.tensor(-5.0)).thresholds == [-5.0]
    with pytest.raises(TypeError, match="^thresholds: "):
        ThresholdSchedule("-5")


def test_schedule_applies_per_step_thresholds_and_warmup():
    sched = ThresholdSchedule([-30.0, -30.0, -1.0, -0.5], warmup_steps=2)
    attn = LiteAttention(schedule=sched, cpu_tile=(16, 16))
    state = la.SkipState()
    for step in range(6):
        q, k, v = drifting(step)
        out = attn(q, k, v)
        if step < 2:  # warm-up: dense, state untouched
            np.testing.assert_allclose(out, reference(q, k, v)[0], atol=2e-5)
            assert attn.stats.calls == 0
            expected = la.attention(q, k, v, cpu_tile=(16, 16))
        else:
            expected = la.attention(q, k, v, state, threshold=sched.threshold(step), cpu_tile=(16, 16))
        np.testing.assert_array_equal(out, expected)
        assert attn.threshold == sched.threshold(step)
    assert attn.stats.calls == 4
    np.testing.assert_array_equal(attn.state().read_mask(), state.read_mask())


def test_stats_per_head_and_cumulative():
    attn = LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    assert attn.stats.calls == 0 and attn.stats.sparsity == 0.0
    sparsities = []
    for step in range(4):
        attn(*drifting(step))
        sparsities.append(attn.stats.sparsity)
    st = attn.stats
    assert st.calls == 4 and st.heads == 2 and len(st.head_sparsity) == 2
    assert sparsities[0] == 0.0  # the first call computes everything
    assert st.cumulative_sparsity == pytest.approx(np.mean(sparsities))
    assert np.mean(st.head_sparsity) == pytest.approx(st.sparsity)
    assert st.tiles_per_head == 10 * 10
    assert np.mean(st.cumulative_head_sparsity) == pytest.approx(st.cumulative_sparsity)
    d = st.to_dict()
    assert d["calls"] == 4 and d["sparsity"] == st.sparsity and len(d["head_sparsity"]) == 2
    json.dumps(d)


def test_copied_and_pickled_states_are_independent():
    # A state keeps a binding handle to its buffers; copies and pickles must not carry it (it is
    # not picklable, and a copy sharing it would write the original's buffers).
    q = randn((1, 64, 2, 32), 7)
    attn = LiteAttention(threshold=-2.0, cpu_tile=(16, 16))
    attn(q, q, q)
    for copied in (copy.deepcopy(attn), pickle.loads(pickle.dumps(attn))):
        state, original = copied.state(), attn.state()
        before = original.mask.copy()
        copied(q, q, q)  # updates the copy's buffers only
        np.testing.assert_array_equal(original.mask, before)
        assert state.stats().calls == 2 and original.stats().calls == 1
        assert copied.step == 1 and attn.step == 0  # the step counter is the copy's own too

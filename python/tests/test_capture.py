"""ActivationRecorder bindings: recording from numpy and torch, windows, EMA, threads.

C++ twins: tests/capture/activation_recorder_test.cc (same case names where they match)
and window_stress_test.cc (windows sum to what was recorded, under concurrency).
"""
# omni-needs: capture
import threading

import numpy as np
import pytest
import torch

import omniplacement as op


def test_counts_every_id_of_a_batch_numpy_and_torch():
    rec = op.ActivationRecorder(2, 8)
    ids = np.array([[0, 3], [3, 7], [0, 0]], dtype=np.int32)   # int32 C-ordered: read in place
    rec.record(0, ids)
    rec.record(1, torch.tensor([[1, 2], [2, 2]]))               # torch int64: converted once
    w = rec.take_window()
    w.check()
    assert w.load.counts().tolist() == [[3, 0, 0, 2, 0, 0, 0, 1], [0, 1, 3, 0, 0, 0, 0, 0]]
    assert w.num_records == 2 and w.index == 0


def test_padding_is_skipped_and_invalid_ids_are_reported_not_wrapped():
    rec = op.ActivationRecorder(1, 4)
    rec.record(0, np.array([-1, -1, 2], dtype=np.int64))
    rec.record(0, np.array([2**32 + 1, 9], dtype=np.int64))    # 2**32 + 1 must not count as expert 1
    rec.record(5, np.array([0], dtype=np.int32))               # layer out of range: rejected call
    w = rec.take_window()
    assert w.load.counts().tolist() == [[0, 0, 1, 0]]
    assert w.num_padding == 2
    assert w.num_invalid == 3 and w.num_rejected_calls == 1
    with pytest.raises(ValueError) as e:
        w.check()
    assert e.value.status_code == "INVALID_ARGUMENT"


def test_record_rejects_float_ids():
    rec = op.ActivationRecorder(1, 4)
    with pytest.raises(ValueError, match="integer dtype"):
        rec.record(0, np.array([0.0, 1.0]))


def test_gate_weights_are_summed_when_tracked():
    rec = op.ActivationRecorder(1, 4, track_gate_weights=True)
    rec.record(0, torch.tensor([[0, 1], [1, 3]]), torch.tensor([[0.5, 0.25], [1.0, 2.0]]))
    w = rec.take_window()
    assert w.gate_weights.values().tolist() == [[0.5, 1.25, 0.0, 2.0]]


def test_take_window_starts_a_new_window_and_steps_are_stamped():
    rec = op.ActivationRecorder(1, 3, history=2, ema_decay=0.5)
    rec.note_step(10)
    rec.record(0, [0, 0])
    first = rec.take_window()
    rec.record(0, [1, 1, 1, 1])
    rec.note_step(20)
    second = rec.take_window()
    assert (second.index, second.step_begin, second.step_end) == (1, 10, 20)
    assert second.load.counts().tolist() == [[0, 4, 0]]
    assert [w.index for w in rec.recent_windows()] == [0, 1]
    assert rec.recent_sum().counts().tolist() == [[2, 4, 0]]
    # ema = 0.5 * first + 0.5 * second
    assert rec.ema().values().tolist() == [[1.0, 2.0, 0.0]]
    assert first.load.counts().tolist() == [[2, 0, 0]]


def test_bad_config_is_rejected_with_a_message():
    with pytest.raises(ValueError):
        op.ActivationRecorder(0, 8)
    with pytest.raises(ValueError):
        op.ActivationRecorder(1, 8, ema_decay=1.5)
    with pytest.raises(ValueError):
        op.ActivationRecorder(1, 8, id_space="rank")


def test_coactivation_every_token_counts_each_pair():
    rec = op.ActivationRecorder(1, 4, coactivation_every=1, top_k=2)
    rec.record(0, np.array([[0, 1], [0, 1], [2, 3]], dtype=np.int32))
    pairs, sampled = rec.take_coactivation()
    assert pairs.shape == (1, 4, 4) and sampled.tolist() == [3]
    assert pairs[0, 0, 1] == pairs[0, 1, 0] == 2 and pairs[0, 2, 3] == 1 and pairs[0, 0, 2] == 0


def test_windows_sum_to_what_python_threads_recorded():
    # Twin: window_stress_test.cc. Four Python threads record (the GIL is released in
    # record) while the main thread takes windows; nothing is lost or counted twice.
    rec = op.ActivationRecorder(2, 16)
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 16, size=(64, 2), dtype=np.int32) for _ in range(200)]
    expected = np.zeros((2, 16), dtype=np.int64)
    for i, b in enumerate(batches):
        expected[i % 2] += np.bincount(b.ravel(), minlength=16)

    def worker(k):
        for i in range(k, len(batches), 4):
            rec.record(i % 2, batches[i])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    total = np.zeros((2, 16), dtype=np.int64)
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        total += rec.take_window().load.counts()
    for t in threads:
        t.join()
    total += rec.take_window().load.counts()
    assert (total == expected).all()

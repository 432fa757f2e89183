"""numpy/torch adapters: tensors in, tensors out where a function maps arrays to arrays.

All tests that need torch live here, so that the other suites stay free of its import
time. C++ twins: none (the adapters are Python-only); the functions called are those of
tests/core/placement_test.cc, load_matrix_test.cc and metrics_test.cc.
"""
import pickle

import numpy as np
import pytest
import torch

import omniplacement as op
import omniplacement.plot as opp
from omniplacement import _tensors


def small():
    return op.Placement([[0, 1, 2, 0]], num_ranks=2, num_experts=3)


def test_placement_accepts_torch():
    p = op.Placement(torch.tensor([[0, 1, 2, 0]]), num_ranks=2, num_experts=3)
    assert list(p.phy2log(0)) == [0, 1, 2, 0]


def test_load_matrix_accepts_torch_and_pickles():
    m = op.LoadMatrix(torch.tensor([[1, 2, 3]], dtype=torch.int32))
    assert m.kind == "counts"
    w = op.LoadMatrix(torch.tensor([[1.5, 2.0]]))
    assert w.kind == "weights"
    assert pickle.loads(pickle.dumps(m)) == m and pickle.loads(pickle.dumps(w)) == w


def test_rank_loads_torch_in_torch_out():
    out = op.rank_loads(small(), 0, torch.tensor([10.0, 4.0, 6.0]))
    assert isinstance(out, torch.Tensor) and out.tolist() == [9.0, 11.0]
    counts = op.water_fill_counts(torch.tensor([8.0, 4.0, 2.0, 2.0]), 6)
    assert isinstance(counts, torch.Tensor) and counts.tolist() == [3, 1, 1, 1]


def test_heatmap_single_placement_and_torch_load(tmp_path):
    p = op.Placement.contiguous(2, 2, 4, 2)
    fig = opp.rank_load_heatmap(p, torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]]), tmp_path / "h.png",
                                dpi=40)
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert fig.axes[0].get_title().startswith("mean max/mean")


def test_tensor_helpers():
    t = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    a = _tensors.to_numpy(t)
    assert isinstance(a, np.ndarray) and np.shares_memory(a, t.numpy())  # CPU: no copy
    assert _tensors.is_tensor(t) and not _tensors.is_tensor(a)
    back = _tensors.to_torch(a, t)
    assert isinstance(back, torch.Tensor) and back.data_ptr() == t.data_ptr()
    grad = torch.ones(3, requires_grad=True)
    assert _tensors.to_numpy(grad).tolist() == [1.0, 1.0, 1.0]  # detached, not an error
    assert op.water_fill_counts(grad, 3).tolist() == [1, 1, 1]


def test_numpy_in_numpy_out():
    out = op.rank_loads(small(), 0, np.array([10.0, 4.0, 6.0]))
    assert isinstance(out, np.ndarray)

"""numpy/torch adapters used by the package's array-in, array-out functions.

torch is never imported here: a tensor can only be passed by a caller that has
imported torch already, so ``sys.modules`` tells whether one can be present.
CPU tensors are shared with numpy without a copy (``Tensor.numpy()`` and
``torch.from_numpy``); tensors on another device are copied to the CPU and the
results are moved back to that device.
"""
import functools
import sys

import numpy as np


def is_tensor(x):
    """True when x is a torch.Tensor (False when torch was never imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x):
    """A numpy view of a CPU tensor (no copy), a CPU copy of another tensor, or x unchanged."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    return x


def to_torch(a, like, dtype=None):
    """numpy array `a` as a tensor on `like`'s device (no copy on the CPU); dtype is a torch dtype or None."""
    torch = sys.modules["torch"]
    t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype is not None:
        t = t.to(dtype)
    return t.to(like.device)


def first_tensor(args):
    """The first torch.Tensor among args (and dict values), or None."""
    for a in args:
        if is_tensor(a):
            return a
    return None


def torch_aware(fn):
    """Wraps fn so that tensor arguments go in as numpy and, when any argument was a
    tensor, numpy results (alone or in a tuple) come back as tensors on its device."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        like = first_tensor(list(args) + list(kwargs.values()))
        if like is None:
            return fn(*args, **kwargs)
        out = fn(*[to_numpy(a) for a in args], **{k: to_numpy(v) for k, v in kwargs.items()})
        if isinstance(out, np.ndarray):
            return to_torch(out, like)
        if isinstance(out, tuple):
            return tuple(to_torch(o, like) if isinstance(o, np.ndarray) else o for o in out)
        return out

    return wrapper

"""Side process groups and batched point-to-point transfers of omniplacement.torch.

The manager never communicates on the engine's own process group: c10d requires every
rank to issue the collectives of one group in the same order, and the manager's engine
thread (the vote) and planner thread (window, plan, weights) would interleave theirs with
each other, and with the engine's, in an order that thread timing decides differently on
each rank: mismatched collectives, wrong data or a hang. So each thread gets a group of
its own over the same ranks, made here directly on the rendezvous store (a c10d
PrefixStore per group and generation) rather than with dist.new_group, which must be
called by every process of the job in the same order, from one thread, and cannot be
redone later by a subset of threads.

A gloo pair that times out is closed for good ("Application timeout caused pair
closure"), so after a failed round the planner thread makes a fresh transfer group; it
does so at the start of the next round, which every rank has agreed to start, so the
rendezvous never waits for a rank that is known to be gone.

Threads: a group returned by make_group() is used by one thread only. All calls block
the calling thread and release the GIL while they wait (c10d's Work.wait does).
"""
import datetime

import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d as c10d


def default_store():
    """The default process group's rendezvous store (c10d keeps it; no public accessor in torch 1.13)."""
    return c10d._get_default_store()


def make_group(backend, store, prefix, rank, size, timeout_s, factory=None):
    """A process group of `size` ranks that rendezvous under `prefix` in `store`.

    Collective over those ranks: each calls it with the same prefix; it returns when all
    have arrived (or raises after timeout_s). timeout_s also bounds every later operation
    on the group. backend: "gloo" or "nccl"; anything else needs `factory(store, rank,
    size, timedelta) -> ProcessGroup` (e.g. torch_npu's ProcessGroupHCCL)."""
    pstore = dist.PrefixStore(prefix, store)
    timeout = datetime.timedelta(seconds=timeout_s)
    if factory is not None:
        return factory(pstore, rank, size, timeout)
    if backend == "gloo":
        return c10d.ProcessGroupGloo(pstore, rank, size, timeout)
    if backend == "nccl":
        opts = c10d.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return c10d.ProcessGroupNCCL(pstore, rank, size, opts)
    raise ValueError(f"omniplacement.torch: no side group for backend '{backend}': pass group_factory=(store, rank, "
                     f"size, timeout) -> ProcessGroup")


def all_reduce(pg, tensor, op):
    """In-place all-reduce of one tensor (dist.ReduceOp op); raises on failure or timeout."""
    opts = dist.AllreduceOptions()
    opts.reduceOp = op
    pg.allreduce([tensor], opts).wait()


def broadcast(pg, tensor, root):
    """In-place broadcast of one tensor from group rank `root`; raises on failure or timeout."""
    opts = dist.BroadcastOptions()
    opts.rootRank = root
    opts.rootTensor = 0
    pg.broadcast([tensor], opts).wait()


class TransferError(RuntimeError):
    """A weight transfer failed or timed out; the message names the peer, layer, expert and slot."""


class P2PBatch:
    """The sends and receives of one commit batch, posted together and waited for together.

    add_send()/add_recv() queue an operation with a description for error messages;
    run() posts them all (inside an NCCL group, so that no ordering between ranks can
    deadlock; gloo operations are asynchronous anyway) and waits for each. Tags must be
    the same on both ends of a message and unique within the batch. Tensors must be
    contiguous and stay alive until run() returns. Planner thread."""

    def __init__(self, pg, backend):
        self._pg = pg
        self._backend = backend
        self._ops = []  # (is_send, tensor, peer, tag, what)

    def __len__(self):
        return len(self._ops)

    def add_send(self, tensor, peer, tag, what):
        self._ops.append((True, tensor, peer, tag, what))

    def add_recv(self, tensor, peer, tag, what):
        self._ops.append((False, tensor, peer, tag, what))

    def run(self):
        """Posts every operation and waits for all; raises TransferError for the first failure
        (after waiting for the others, so that no buffer is released while in use)."""
        if not self._ops:
            return
        works = []
        nccl = self._backend == "nccl"
        if nccl:
            c10d.ProcessGroupNCCL._group_start()
        try:
            for is_send, tensor, peer, tag, what in self._ops:
                try:
                    w = (self._pg.send if is_send else self._pg.recv)([tensor], peer, tag)
                except Exception as e:  # noqa: BLE001  (c10d raises RuntimeError subclasses)
                    works.append((None, what, e))
                    continue
                works.append((w, what, None))
        finally:
            if nccl:
                c10d.ProcessGroupNCCL._group_end()
        first = None
        for w, what, err in works:
            if err is None:
                try:
                    w.wait()
                except Exception as e:  # noqa: BLE001
                    err = e
            if err is not None and first is None:
                first = TransferError(f"{what}: {err}")
        if first is not None:
            raise first
        if nccl:
            torch.cuda.current_stream().synchronize()  # the data has landed before this rank votes ready

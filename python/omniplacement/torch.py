"""omniplacement.torch: dynamic expert placement for PyTorch engines over torch.distributed.

Each rank of an expert-parallel (EP) group holds its experts' weights as torch tensors
(CPU here; CUDA or NPU where the engine runs) and a torch.distributed process group
(gloo here; NCCL or HCCL in production). A PlacementManager per rank runs the protocol of
the C++ runtime (include/omniplacement/runtime/placement_manager.h; docs/DESIGN.md, "The
runtime protocol") on those tensors:

    import torch, torch.distributed as dist, omniplacement as op
    from omniplacement.torch import Options, PlacementManager

    dist.init_process_group("gloo", ...)                         # the engine's group
    placement = op.Placement.contiguous(num_layers=12, num_ranks=4, num_experts=60, slots_per_rank=16)
    # weights[l]: this rank's slots of layer l, every tensor [slots_per_rank, ...]
    weights = [(w13[l], w2[l]) for l in range(12)]
    with PlacementManager(placement, weights, options=Options(replan_interval_steps=200)) as pm:
        for step in itertools.count():
            for l in range(12):
                ids = router(l, hidden)                          # [tokens, top_k] logical ids
                pm.record(l, ids)                                # counts on the device, no sync
                slots = pm.dispatch(l, ids)                      # global slots, same shape
                ... all-to-all to rank slots // pm.tables.slots_of(l), experts, combine ...
            pm.step_boundary(step)                               # may commit an epoch

Protocol. record() counts each layer's top-k ids into a [layers, experts] tensor on the
engine's device. Every replan_interval_steps the ranks agree (the vote below) to start a
round: each hands its window to its planner thread, which all-reduces it over the group,
plans with options.planner_spec (through the project's planners; every rank plans the same
and the vote compares checksums, or group rank 0 plans and broadcasts), keeps the old
placement when the predicted gain is below min_gain, derives the migration plan with
omniplacement.diff (only changed slots move, each from the nearest replica: the same
rank, then the same host), and stages one batch of layers at a time (bounded by
staging_bytes_per_rank and layers_per_commit) into staging tensors with batched
point-to-point sends and receives, while the engine keeps serving the old placement. At
every commit_cadence_steps-th step while a round is due or running, step_boundary() makes
the vote: a 12-word all-reduce (omniplacement.encode_vote / decide_votes, the C++ commit
protocol) after which every rank takes the same decision at the same step. When every rank
has its batch staged, every rank copies staging into the weight tensors and updates the
routing tables, in place, at that step: a new epoch. A failed or timed-out transfer, a
planning error or a disagreement aborts the round: staging is dropped and the old
placement stays, and serving goes on.

Shift detection (Options.shift_check_steps, shift_threshold; the C++ options of the same
names, include/omniplacement/runtime/shift_check.h). Every shift_check_steps steps while no
round runs, step_boundary() all-reduces (sum, vote group) the counts of those steps and prices
them under the placement in force with the dispatch in force (placement_balance: dispatch()
splits each expert evenly over its replicas), against what that placement gives on the load
the last round planned on (its promise). When the steps cost more than the promise by more
than shift_threshold (mean over layers of max/mean rank load), every rank starts a round at
that same step, planned on those steps alone; the next window starts after them. Every rank
prices the same sum under the same placement, so every rank decides alike; a check decides
nothing before the first plan, while a planner is still leaving its last round, or when the
ranks hold different plans' loads (an aborted round). Unlike the C++ manager, whose planner
thread aggregates and prices a check, here both run on the engine thread at the check step.

Threads. The engine thread (the one that runs the forward pass) calls record(),
dispatch() and step_boundary(), on every rank in the same order; on CUDA they run in the
order of its current stream. The planner thread (one per manager, started here) does the
window all-reduce, planning, the migration plan and the transfers; it never touches the
weight tensors except to read source slots, and never the routing tables. epoch,
placement, stats() and close() may be called from any thread. Collectives: the manager
makes two process groups of its own over the EP group's ranks (omniplacement._torch_comm
explains why one group cannot serve two threads): a vote group that only the engine thread
uses, inside step_boundary(), and a transfer group that only the planner thread uses. The
engine's own group is never used for communication. The planner thread holds the GIL only
for bookkeeping: planning, waits and tensor copies release it.

Failures. A transfer that fails or times out (transfer_timeout_ms; a gloo pair that timed
out is closed, so the planner makes a fresh transfer group at the next round) makes this
rank vote "failed" and every rank aborts the round at the same step. A vote collective
that fails (a peer process died: gloo reports "Connection closed by peer"; or
collective_timeout_ms passed) cannot be agreed on, so step_boundary() aborts the round on
this rank, keeps the placement in force, switches dynamic placement off on this rank and
raises AgreementError once; afterwards record(), dispatch() and the tables keep working on
the last committed placement and step_boundary() returns at once. With gloo a dead peer
breaks every group it belonged to, the engine's too, so an engine on gloo cannot serve on
after a peer died; it can stop cleanly (close() returns within the timeouts).
NCCL/HCCL: the same code paths (device tensors, grouped p2p), not run in this project's
tests (no multi-GPU machine); with NCCL, kernels of the manager's and the engine's
communicators may serialise on the GPU, so keep the engine's collectives on their own
stream and watch for ordering deadlocks.

Shapes and ownership: see PlacementManager and RoutingTables (omniplacement._torch_tables).

This module is about 930 lines, above the project's ~800: PlacementManager (most of it) keeps one
round's state (the window, the shift check, the staged batches, the agreement) that its methods
share on the engine thread and the planner thread; Options and the small helpers before it serve it alone.
"""
import collections
import dataclasses
import hashlib
import itertools
import threading
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d as c10d

from . import _omni
from ._torch_comm import P2PBatch, TransferError, all_reduce, broadcast, default_store, make_group
from ._torch_tables import RoutingTables, max_replicas_needed

__all__ = ["AgreementError", "Options", "PlacementManager", "RoutingTables", "TransferError", "TransferEvent",
           "layer_batches", "max_replicas_needed"]

# Columns of MigrationPlan.transfers.
_LAYER, _EXPERT, _SRC_RANK, _SRC_SLOT, _DST_RANK, _DST_SLOT, _BYTES = 1, 2, 3, 4, 5, 6, 9

TransferEvent = collections.namedtuple(
    "TransferEvent", ["round", "batch", "layer", "expert", "src_rank", "src_slot", "dst_rank", "dst_slot", "bytes"])
TransferEvent.__doc__ = "One weight transfer, as the test hooks see it (ranks are group ranks; bytes of one slot)."


class AgreementError(RuntimeError):
    """The vote collective failed (a peer died or it timed out): the round in flight was
    aborted, the placement in force stays, and dynamic placement is off on this rank."""


@dataclasses.dataclass
class Options:
    """PlacementManager options. Names and defaults follow omniplacement.ManagerOptions
    (the C++ PlacementManagerOptions); times are milliseconds. Every rank must pass the same
    values (checked when the manager is created), except the hooks."""

    dynamic: bool = True                  # off: record and dispatch only, step_boundary never communicates
    planner_spec: str = "omni"            # planner spec string (omniplacement.planner_names())
    plan_on: str = "all"                  # "all": every rank plans, checksums compared; "leader": group rank 0
    replan_interval_steps: int = 1000     # a round starts every this many steps (the first after this many)
    commit_cadence_steps: int = 4         # the vote runs at multiples of this while a round is due or running
    commit_timeout_steps: int = 2000      # a batch not staged everywhere after this many steps is aborted
    min_gain: float = 0.0                 # > 0: keep the placement unless the window's mean max/mean drops by this much
    layers_per_commit: int = 0            # at most this many layers per commit (0: as staging allows)
    staging_bytes_per_rank: int = 1 << 30    # staging one batch may use on any rank
    stage_wait_ms: int = 0                # engine waits up to this for its own staging before voting (0: never)
    collective_timeout_ms: int = 30000    # bounds each vote (and the groups' creation)
    transfer_timeout_ms: int = 30000      # bounds each transfer, the window all-reduce and the plan broadcast
    max_replicas: int = 0                 # log2phy width (0: max_replicas_needed(placement))
    # Shift detection (the C++ options of the same names; module docstring, "Shift detection"):
    # every shift_check_steps steps while no round runs, the load of those steps (all ranks) is
    # priced under the placement in force; above the plan's promise by more than shift_threshold
    # (mean over layers of max/mean rank load), a round starts at once, planned on those steps.
    shift_check_steps: int = -1           # 0: off; -1: max(1, replan_interval_steps // 10) (0 when that is 1)
    shift_threshold: float = 0.07         # absolute, finite, >= 0
    # Test hooks, called on the planner thread with a TransferEvent: before_send before each
    # weight this rank sends to another rank, before_transfer before each one it receives (local
    # copies included). An exception fails the batch (this rank votes "failed").
    before_send: object = None
    before_transfer: object = None

    def check(self):
        """ValueError naming the first field out of range."""
        rules = [("replan_interval_steps", self.replan_interval_steps >= 1, ">= 1"),
                 ("commit_cadence_steps", self.commit_cadence_steps >= 1, ">= 1"),
                 ("commit_timeout_steps", self.commit_timeout_steps >= 1, ">= 1"),
                 ("min_gain", self.min_gain >= 0, ">= 0"),
                 ("layers_per_commit", self.layers_per_commit >= 0, ">= 0"),
                 ("staging_bytes_per_rank", self.staging_bytes_per_rank >= 1, ">= 1"),
                 ("stage_wait_ms", self.stage_wait_ms >= 0, ">= 0"),
                 ("collective_timeout_ms", self.collective_timeout_ms >= 1, ">= 1"),
                 ("transfer_timeout_ms", self.transfer_timeout_ms >= 1, ">= 1"),
                 ("max_replicas", self.max_replicas >= 0, ">= 0"),
                 ("shift_check_steps", self.shift_check_steps >= -1, ">= 0 (0: off) or -1 (auto)"),
                 ("shift_threshold", bool(np.isfinite(self.shift_threshold)) and self.shift_threshold >= 0,
                  "finite and >= 0"),
                 ("plan_on", self.plan_on in ("all", "leader"), "'all' or 'leader'"),
                 ("collective_timeout_ms", self.collective_timeout_ms > self.stage_wait_ms,
                  f"> stage_wait_ms ({self.stage_wait_ms}: an engine may wait that long before it joins a vote)")]
        for name, ok, want in rules:
            if not ok:
                raise ValueError(f"omniplacement.torch.Options: {name} must be {want}, got {getattr(self, name)!r}")

    # The fields ManagerOptions (the C++ PlacementManagerOptions) shares with these, by name.
    _CONFIG_FIELDS = ("dynamic", "planner_spec", "replan_interval_steps", "commit_cadence_steps",
                      "commit_timeout_steps", "min_gain", "layers_per_commit", "staging_bytes_per_rank",
                      "stage_wait_ms", "collective_timeout_ms", "transfer_timeout_ms", "shift_check_steps",
                      "shift_threshold")

    @classmethod
    def from_config(cls, config, **overrides):
        """Options from a parsed YAML config (omniplacement.io.read_config / parse_config),
        read by the C++ loader (omniplacement.ManagerOptions.from_config, ValueError naming a
        bad key): the fields of the same names (dynamic from enable_dynamic, off unless the
        config says true), the C++ defaults where the config is silent
        (staging_bytes_per_rank 0, "no limit" there, becomes 2**62 here); then
        `overrides` (e.g. hooks, plan_on). ValueError from Options.check. Any thread."""
        mo = _omni.ManagerOptions.from_config(config)
        kw = {name: getattr(mo, name) for name in cls._CONFIG_FIELDS}
        if kw["staging_bytes_per_rank"] == 0:
            kw["staging_bytes_per_rank"] = 1 << 62
        kw.update(overrides)
        out = cls(**kw)
        out.check()
        return out

    def resolved_shift_check_steps(self):
        """The shift check period in steps (0: off), as omni::resolved_shift_check_steps
        resolves it: a positive shift_check_steps is itself, -1 is max(1,
        replan_interval_steps // 10) (0 for an interval of one step), and dynamic off is 0."""
        if not self.dynamic:
            return 0
        if self.shift_check_steps == -1:
            return 0 if self.replan_interval_steps <= 1 else max(1, self.replan_interval_steps // 10)
        return max(0, self.shift_check_steps)

    def agreed_fields(self):
        """The fields every rank must share, as one string (hooks excluded)."""
        return repr([(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                     if f.name not in ("before_send", "before_transfer", "stage_wait_ms")])


def layer_batches(changed_layers, transfers, num_ranks, staging_bytes_per_rank, layers_per_commit=0):
    """Groups the changed layers (ascending) into commit batches, as the C++ runtime does.

    transfers: MigrationPlan.transfers rows. A layer needs, on rank r, the bytes of the
    transfers it receives (local copies included); a batch takes layers in order while the
    sum of their needs (each the largest over the ranks) stays within staging_bytes_per_rank
    and, when layers_per_commit > 0, its layer count within that. Returns a list of lists
    of layers. RuntimeError naming the layer, rank and bytes when one layer alone needs more
    than the limit. Pure; any thread."""
    need_of = {}
    for l in changed_layers:
        rows = transfers[transfers[:, _LAYER] == l]
        per_rank = np.bincount(rows[:, _DST_RANK], weights=rows[:, _BYTES], minlength=num_ranks)
        r = int(per_rank.argmax())
        need = int(per_rank[r])
        if need > staging_bytes_per_rank:
            raise RuntimeError(f"RESOURCE_EXHAUSTED: layer {l} needs {need} bytes of staging on rank {r}, over the "
                               f"staging limit of {staging_bytes_per_rank} bytes")
        need_of[l] = need
    batches, used = [], 0
    for l in changed_layers:
        full = batches and ((layers_per_commit > 0 and len(batches[-1]) >= layers_per_commit) or
                            used + need_of[l] > staging_bytes_per_rank)
        if not batches or full:
            batches.append([])
            used = 0
        batches[-1].append(l)
        used += need_of[l]
    return batches


def _hash63(text):
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


def _next_multiple(step, interval):
    return (step // interval + 1) * interval


# reduced: the window is already summed over the ranks (a shift round's checked steps).
_Job = collections.namedtuple("_Job", ["round", "window", "window_ready", "base", "reduced"])


class _Prepared:
    """One staged batch, handed from the planner thread to the engine thread."""

    def __init__(self, round_id, batch, last):
        self.round, self.batch, self.last = round_id, batch, last
        self.rows = []           # LayerRows of the batch's layers
        self.staging = []        # (layer, dst_slot, [tensor per weight tensor of the layer])
        self.placement = None    # the placement in force after this batch commits
        self.experts_moved = 0   # transfers of the batch, all ranks
        self.bytes_moved = 0     # their bytes, all ranks
        self.bytes_received = 0  # staged by this rank
        self.staging_bytes = 0


_instances = itertools.count()


class PlacementManager:
    """Dynamic expert placement on one rank of a PyTorch engine (module docstring).

    placement: the omniplacement.Placement whose weights `weights` hold on this rank,
      identical on every rank; its num_ranks is the EP group's size.
    weights: one entry per MoE layer: a tensor, or a sequence of tensors (e.g. (w13, w2)),
      each shaped [placement.slots_per_rank(l), ...] with row s the weights of this rank's
      slot s, C-contiguous, all on one device. Borrowed: the manager writes rows in place
      (``copy_``) at commit steps on the engine thread and reads rows on the planner
      thread; the engine must not resize or replace them.
    group: the EP process group (None: the default group); its rank order is the
      placement's rank order. Only its membership, rank and backend are used.
    options: Options (None: defaults). topology: omniplacement.Topology for the planner and
      the source choice (None: one host). device: where the routing tables and counts live
      (None: the weights' device). store: the rendezvous store for the manager's own groups
      (None: the default group's). backend: of the manager's groups, "gloo" or "nccl" (None:
      the group's; gloo moves weights through host memory). group_factory: (store, rank,
      size, timeout) -> ProcessGroup for other backends. name: distinguishes two managers
      over the same ranks created in a different order on different ranks (rarely needed).

    Creating a manager is collective over the group (every rank, same order): it makes the
    manager's vote and transfer groups and checks that every rank has the same placement,
    weight layout and options (ValueError naming what differs otherwise).

    Tensors owned by the manager: tables (RoutingTables: phy2log, log2phy, logcnt,
    local_phy2log, slots_per_rank on `device`, updated in place) and counts ([layers,
    experts] int64 on `device`, the window being recorded).
    """

    def __init__(self, placement, weights, *, group=None, options=None, topology=None, device=None, store=None,
                 backend=None, group_factory=None, name=None):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("omniplacement.torch.PlacementManager: torch.distributed is not initialised "
                               "(call dist.init_process_group first)")
        self._opts = dataclasses.replace(options) if options is not None else Options()  # a copy: fixed from here
        self._opts.check()
        self._group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self._group)
        size = dist.get_world_size(self._group)
        L, E, R = placement.num_layers, placement.num_experts, placement.num_ranks
        if size != R:
            raise ValueError(f"omniplacement.torch: the group has {size} ranks, the placement {R}")
        self.num_layers, self.num_experts, self.num_ranks = L, E, R
        self._weights = self._check_weights(placement, weights)
        self._device = torch.device(device) if device is not None else self._weights[0][0].device
        self._backend = str(backend or dist.get_backend(self._group))
        self._comm_device = torch.device("cpu") if self._backend == "gloo" else self._device
        self._slot_bytes = [sum(t[0].numel() * t.element_size() for t in ws) for ws in self._weights]
        self._topology = topology if topology is not None else _omni.Topology.uniform(R, R)
        self._planner = _omni.Planner(self._opts.planner_spec)  # ValueError for a bad spec
        self._placement = placement.without_shares() if placement.has_shares else placement
        self._placement_sum = _omni.vote_checksum(self._placement.checksum)  # engine thread's copy for votes
        self.tables = RoutingTables(self._placement, self.rank, self._device, self._opts.max_replicas)
        self.counts = torch.zeros((L, E), dtype=torch.int64, device=self._device)
        self._epoch = 0

        # The manager's groups (collective).
        self._store = store if store is not None else default_store()
        self._factory = group_factory
        if self._group is dist.group.WORLD or self._group == c10d._get_default_group():
            members = "world"
        else:
            members = ",".join(str(c10d._get_global_rank(self._group, r)) for r in range(size))
        self._prefix = f"omniplacement.torch/{name or members}/{next(_instances)}"
        self._vote_pg = make_group(self._backend, self._store, self._prefix + "/vote", self.rank, R,
                                   self._opts.collective_timeout_ms / 1e3, group_factory)
        self._transfer_gen = 0
        self._transfer_pg = make_group(self._backend, self._store, f"{self._prefix}/transfer/0", self.rank, R,
                                       self._opts.transfer_timeout_ms / 1e3, group_factory)
        self._transfer_stale = False  # planner thread: make a fresh transfer group at the next round
        self._vote_buf = torch.zeros(_omni.VOTE_WORDS, dtype=torch.int64, device=self._comm_device)
        self._check_agreement()

        # Engine-thread round state (identical on every rank).
        self._active = False
        self._round = -1
        self._batch = 0
        self._waited = 0
        self._next_round_step = self._opts.replan_interval_steps
        self._next_round_id = 0
        self._broken = False
        self._commit_event = None  # CUDA: the last commit's copies (the planner waits before reading slots)
        # Shift detection (engine thread; identical on every rank).
        self._shift_steps = self._opts.resolved_shift_check_steps()
        self._last_take_step = 0      # step of the last window taken (round start or shift check)
        self._check_base = None       # counts at the last check since the last round start (None: zero)
        self._promise = None          # (planned-on round, placement checksum, promised max/mean) cached

        # Shared with the planner thread, under _cv.
        self._cv = threading.Condition()
        self._vote = [-1, 0, _omni.StagePhase.idle, False, 0]  # round, batch, phase, last_batch, plan checksum
        self._job = None
        self._prepared = None
        self._verdict = (-1, -1, "")  # round, batch, decision
        self._stop = False
        self._planner_error = ""
        self._planned_on = (-1, None)  # (round, LoadMatrix): the load the last round planned on (planner sets it)
        self._stats = dict(steps=0, epoch=0, rounds_started=0, rounds_completed=0, rounds_no_change=0,
                           rounds_aborted=0, rounds_closed=0, last_abort="", aborts=[], batches_committed=0,
                           experts_moved=0, bytes_moved=0, bytes_received=0, agreement_collectives=0,
                           staging_bytes=0, max_staging_bytes=0, transfer_groups=1,
                           step_boundary_cpu_seconds=0.0, commit_cpu_seconds=0.0, agreement_seconds=0.0,
                           planning_seconds=0.0, transfer_seconds=0.0, last_predicted_before=0.0,
                           last_predicted_after=0.0, shift_checks=0, shift_rounds=0, shift_check_seconds=0.0,
                           last_shift_now=0.0, last_shift_promised=0.0)
        self._thread = threading.Thread(target=self._planner_main, name=f"omniplacement.torch planner r{self.rank}",
                                        daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- set-up
    def _check_weights(self, placement, weights):
        layers = list(weights)
        if len(layers) != placement.num_layers:
            raise ValueError(f"omniplacement.torch: weights has {len(layers)} layers, the placement "
                             f"{placement.num_layers}")
        out, device = [], None
        for l, w in enumerate(layers):
            ts = (w,) if isinstance(w, torch.Tensor) else tuple(w)
            if not ts:
                raise ValueError(f"omniplacement.torch: weights of layer {l} is empty")
            for k, t in enumerate(ts):
                where = f"omniplacement.torch: layer {l}, weight tensor {k}"
                if not isinstance(t, torch.Tensor):
                    raise ValueError(f"{where}: expected a torch.Tensor, got {type(t).__name__}")
                if t.dim() < 1 or t.shape[0] != placement.slots_per_rank(l):
                    raise ValueError(f"{where}: shape {tuple(t.shape)}, expected [slots_per_rank = "
                                     f"{placement.slots_per_rank(l)}, ...]")
                if not t.is_contiguous():
                    raise ValueError(f"{where}: must be contiguous (rows are sent and received in place)")
                device = device or t.device
                if t.device != device:
                    raise ValueError(f"{where}: on {t.device}, the other weights on {device}")
            out.append(ts)
        return out

    def _check_agreement(self):
        layout = [(l, [(tuple(t.shape[1:]), str(t.dtype)) for t in ws]) for l, ws in enumerate(self._weights)]
        h = _hash63(f"{self._placement.checksum}|{layout}|{self._opts.agreed_fields()}")
        buf = torch.tensor([h, -h], dtype=torch.int64, device=self._comm_device)
        all_reduce(self._vote_pg, buf, dist.ReduceOp.MAX)
        hi, lo = int(buf[0]), -int(buf[1])
        if hi != lo:
            raise ValueError(f"omniplacement.torch: rank {self.rank}: the ranks disagree on the initial placement, "
                             f"the weight tensors' row shapes/dtypes or the options (every rank must pass the same)")

    # ----------------------------------------------------------- engine thread
    def record(self, layer, topk_ids):
        """Counts `topk_ids` (logical expert ids of `layer`, any shape; -1 or ids outside
        [0, num_experts) are padding) into counts[layer]. Engine thread; on the device,
        no host sync."""
        ids = topk_ids.reshape(-1).to(device=self._device, dtype=torch.int64)
        valid = (ids >= 0) & (ids < self.num_experts)
        self.counts[layer].scatter_add_(0, ids.clamp(0, self.num_experts - 1), valid.long())

    def dispatch(self, layer, topk_ids):
        """Global slots serving `topk_ids` under the placement in force (RoutingTables.dispatch).
        Engine thread."""
        return self.tables.dispatch(layer, topk_ids)

    def step_boundary(self, step):
        """Ends step `step` (increasing, the same on every rank). Engine thread.

        Most steps return None at once. At cadence steps while a round is due or running it
        votes and applies the decision, returned as a string: 'start-round', 'wait',
        'commit' (an epoch switched at this step), 'finish' (no change worth moving) or
        'abort'. With shift detection on, every shift_check_steps-th step while no round
        runs makes the shift check (module docstring) and returns 'shift-round' when it
        starts a round, else None. Raises AgreementError when the vote or the check's
        collective fails (see the module docstring); later calls then return None."""
        self._stats["steps"] += 1
        if not self._opts.dynamic or self._broken:
            return None
        if not self._active and step < self._next_round_step:
            if self._shift_steps > 0 and step - self._last_take_step >= self._shift_steps:
                return self._shift_check(step)
            return None
        if step % self._opts.commit_cadence_steps != 0:
            return None
        t_cpu = time.thread_time()
        wait_s = self._opts.stage_wait_ms / 1e3
        with self._cv:
            if wait_s > 0 and self._active:
                self._cv.wait_for(lambda: self._stop or self._vote[2] not in (_omni.StagePhase.working,
                                                                              _omni.StagePhase.idle), wait_s)
            elif wait_s > 0:
                self._cv.wait_for(lambda: self._stop or self._vote[2] == _omni.StagePhase.idle, wait_s)
            round_id, batch, phase, last, plan_sum = self._vote
        placement_sum = self._placement_sum
        words = _omni.encode_vote(round_id, batch, phase, last, plan_sum, placement_sum)
        t0 = time.perf_counter()
        try:
            self._vote_buf.copy_(torch.from_numpy(words))
            all_reduce(self._vote_pg, self._vote_buf, dist.ReduceOp.MAX)
        except Exception as e:  # noqa: BLE001  (gloo raises RuntimeError; others may differ)
            self._collective_failed(step, "agreement collective", e)
        agree_s = time.perf_counter() - t0
        reduced = self._vote_buf.cpu().numpy()
        decision, reason, last_batch = _omni.decide_votes(
            reduced, active=self._active, round=self._round, batch=self._batch, waited_steps=self._waited,
            timeout_steps=self._opts.commit_timeout_steps, placement_checksum=placement_sum)
        self._apply(decision, reason, last_batch, step)
        with self._cv:
            self._stats["agreement_collectives"] += 1
            self._stats["agreement_seconds"] += agree_s
            self._stats["step_boundary_cpu_seconds"] += time.thread_time() - t_cpu
        return decision

    def _collective_failed(self, step, what, e):
        """A failed engine-thread collective: aborts the round in flight, switches dynamic
        placement off on this rank and raises AgreementError. Engine thread."""
        self._broken = True
        msg = f"{what} failed at step {step}: {e}"
        with self._cv:
            self._note_abort(msg)
            if self._active:
                self._verdict = (self._round, self._batch, "abort")
                self._stats["rounds_aborted"] += 1
            self._cv.notify_all()
        self._active = False
        raise AgreementError(f"omniplacement.torch: rank {self.rank}, step {step}: {msg}; dynamic placement "
                             f"switched off, epoch {self._epoch} stays") from e

    def _shift_check(self, step):
        """One shift check at `step` (no round running, shift_check_steps steps since the last
        window was taken). Engine thread; collective over the vote group on every rank at the
        same step. Returns 'shift-round' when a round starts, else None.

        One sum all-reduce carries the counts of the steps since the last check (this rank's
        [layers, experts]) and four words: 1 when this rank's planner is busy (still leaving
        the last round), 1 when it has no plan's load yet, and the round that load came from
        and its square (all ranks hold the same load exactly when R * sum(r^2) == sum(r)^2).
        Every rank then prices the same sum under the same placement with the same code, so
        every rank decides the same: a round starts when the load of those steps costs more
        than the plan promised (the same placement's cost on the load it was planned on) by
        more than shift_threshold, every planner is idle and all hold the same plan's load."""
        t_cpu = time.thread_time()
        L, E = self.num_layers, self.num_experts
        chunk = self.counts if self._check_base is None else self.counts - self._check_base
        self._check_base = self.counts.clone()
        self._last_take_step = step
        wait_s = self._opts.stage_wait_ms / 1e3
        with self._cv:
            idle = lambda: self._vote[2] == _omni.StagePhase.idle and self._job is None  # noqa: E731
            if wait_s > 0:
                self._cv.wait_for(lambda: self._stop or idle(), wait_s)
            busy = 0 if idle() else 1
            planned_round, planned_on = self._planned_on
        buf = torch.empty(L * E + 4, dtype=torch.int64, device=self._comm_device)
        buf[:L * E].copy_(chunk.reshape(-1))
        buf[L * E:] = torch.tensor([busy, 1 if planned_on is None else 0, planned_round, planned_round * planned_round])
        try:
            all_reduce(self._vote_pg, buf, dist.ReduceOp.SUM)
        except Exception as e:  # noqa: BLE001  (as the vote: a failed collective cannot be agreed on)
            self._collective_failed(step, "shift check collective", e)
        words = buf[L * E:].cpu().tolist()
        load = _omni.LoadMatrix(buf[:L * E].cpu().numpy().reshape(L, E))
        same_plan = words[1] == 0 and self.num_ranks * words[3] == words[2] * words[2]
        now = promised = None
        if same_plan:
            key = (planned_round, self._placement.checksum)
            if self._promise is None or self._promise[0] != key:
                self._promise = (key, _omni.placement_balance(self._placement, planned_on).mean_max_over_mean)
            promised = self._promise[1]
            now = _omni.placement_balance(self._placement, load).mean_max_over_mean
        shift = now is not None and words[0] == 0 and now > promised + self._opts.shift_threshold
        with self._cv:
            s = self._stats
            s["shift_checks"] += 1
            if now is not None:
                s["last_shift_now"], s["last_shift_promised"] = now, promised
            s["shift_check_seconds"] += time.thread_time() - t_cpu
        if not shift:
            return None
        # The round plans on the checked steps alone; the next window starts after them.
        self.counts.zero_()
        self._check_base = None
        window = buf[:L * E].view(L, E)
        self._start_round(step, window, None, reduced=True)
        with self._cv:
            self._stats["shift_rounds"] += 1
        return "shift-round"

    def _start_round(self, step, window, event, reduced):
        job = _Job(self._next_round_id, window, event, self._placement, reduced)
        self._next_round_id += 1
        self._last_take_step = step
        self._active, self._round, self._batch, self._waited = True, job.round, 0, 0
        with self._cv:
            self._vote = [job.round, 0, _omni.StagePhase.working, False, 0]
            self._job = job
            self._planner_error = ""
            self._stats["rounds_started"] += 1
            self._cv.notify_all()

    def _take_window(self):
        """The recorded window for the planner (on the comm device) and a CUDA event that
        says when it is there; counts start again from zero. Engine thread."""
        window = self.counts.to(self._comm_device, copy=True)
        self.counts.zero_()
        self._check_base = None
        event = None
        if self._device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        return window, event

    def _apply(self, decision, reason, last_batch, step):
        if decision == "wait":
            if self._active:
                self._waited += self._opts.commit_cadence_steps
        elif decision == "start-round":
            window, event = self._take_window()
            self._start_round(step, window, event, reduced=False)
        elif decision == "commit":
            self._commit(last_batch, step)
        elif decision in ("finish", "abort"):
            with self._cv:
                self._verdict = (self._round, self._batch, decision)
                if decision == "finish":
                    self._stats["rounds_no_change"] += 1
                else:
                    self._stats["rounds_aborted"] += 1
                    err = f" ({self._planner_error})" if self._planner_error else ""
                    self._note_abort(f"round {self._round} batch {self._batch} aborted at step {step}: {reason}{err}")
                self._cv.notify_all()
            self._active = False
            self._next_round_step = _next_multiple(step, self._opts.replan_interval_steps)

    def _commit(self, last_batch, step):
        t_cpu = time.thread_time()
        with self._cv:
            prep, self._prepared = self._prepared, None
        # Every rank voted ready for this round and batch, this one included, so its
        # planner has handed the batch over; anything else is a bug in this module.
        assert prep is not None and prep.round == self._round and prep.batch == self._batch, (
            f"commit of round {self._round} batch {self._batch} without its staged batch")
        for layer, slot, rows in prep.staging:
            for t, staged in zip(self._weights[layer], rows):
                t[slot].copy_(staged)
        for rows in prep.rows:
            self.tables.update_layer(rows)
        if self._device.type == "cuda":
            self._commit_event = torch.cuda.Event()
            self._commit_event.record()
        self._placement = prep.placement
        self._placement_sum = _omni.vote_checksum(prep.placement.checksum)
        self._epoch += 1
        with self._cv:
            s = self._stats
            s["epoch"] = self._epoch
            s["batches_committed"] += 1
            s["experts_moved"] += prep.experts_moved
            s["bytes_moved"] += prep.bytes_moved
            s["bytes_received"] += prep.bytes_received
            s["staging_bytes"] -= prep.staging_bytes
            if last_batch:
                s["rounds_completed"] += 1
            self._verdict = (self._round, self._batch, "commit")
            if not last_batch:  # a stale "ready" must never count twice
                self._vote = [self._round, self._batch + 1, _omni.StagePhase.working, False, self._vote[4]]
            s["commit_cpu_seconds"] += time.thread_time() - t_cpu
            self._cv.notify_all()
        self._batch += 1
        self._waited = 0
        if last_batch:
            self._active = False
            self._next_round_step = _next_multiple(step, self._opts.replan_interval_steps)

    def _note_abort(self, msg):
        """Keeps an abort message (caller holds _cv): last_abort and the last 16 in aborts."""
        self._stats["last_abort"] = msg
        self._stats["aborts"] = (self._stats["aborts"] + [msg])[-16:]

    # ------------------------------------------------------------ any thread
    @property
    def epoch(self):
        """Batches committed so far on this rank (the same on every rank at the same step)."""
        return self._epoch

    @property
    def placement(self):
        """The omniplacement.Placement in force (immutable; replaced at each commit)."""
        return self._placement

    @property
    def broken(self):
        """True after AgreementError: dynamic placement is off on this rank."""
        return self._broken

    def stats(self):
        """A dict of counters and timings: epoch, rounds_started/completed/no_change/aborted
        (rounds_closed: rounds in flight when close() was called), last_abort and aborts (the
        last 16 messages: round, batch, step, reason, the failing rank's error),
        batches_committed, experts_moved and bytes_moved (all ranks, committed batches),
        bytes_received (this rank), staging_bytes and max_staging_bytes (this rank, now and
        at most), transfer_groups (made so far), agreement_collectives, engine-thread CPU
        seconds in step_boundary (agreement steps) and in commits, wall seconds in the
        votes, planner-thread seconds planning and transferring, the last plan's
        predicted mean max/mean rank load before and after, and shift detection's
        shift_checks, shift_rounds (rounds it started), shift_check_seconds (engine-thread
        CPU) and the last check's last_shift_now and last_shift_promised (mean max/mean)."""
        with self._cv:
            out = dict(self._stats)
            out["aborts"] = list(out["aborts"])
            return out

    def close(self):
        """Stops the planner thread; a round in flight is aborted (staging dropped, the
        placement in force stays). Local, not collective; idempotent. Returns within about
        transfer_timeout_ms plus a planning call; a planner thread still blocked then is
        left behind (a daemon thread) and reported in stats()['last_abort']."""
        with self._cv:
            if self._stop:
                return
            self._stop = True
            if self._active:
                self._verdict = (self._round, self._batch, "abort")
                self._stats["rounds_closed"] += 1
                self._note_abort(f"round {self._round} batch {self._batch} dropped: manager closed")
                self._active = False
            self._cv.notify_all()
        self._thread.join(timeout=2 * self._opts.transfer_timeout_ms / 1e3 + 5)
        if self._thread.is_alive():
            with self._cv:
                self._note_abort("planner thread still busy after close()")
            return
        self._transfer_pg = None
        self._vote_pg = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"<omniplacement.torch.PlacementManager rank {self.rank}/{self.num_ranks}, {self.num_layers} layers x "
                f"{self.num_experts} experts, planner '{self._opts.planner_spec}', epoch {self._epoch}>")

    # ---------------------------------------------------------- planner thread
    def _set_vote(self, round_id, batch, phase, last, plan_sum):
        with self._cv:
            self._vote = [round_id, batch, phase, last, plan_sum]
            self._cv.notify_all()

    def _wait_verdict(self, round_id, batch):
        """The engine's decision on (round, batch): 'commit', 'finish', 'abort' or 'stop'."""
        with self._cv:
            def ready():
                r, b, d = self._verdict
                return self._stop or r > round_id or (r == round_id and (b >= batch or d != "commit"))
            self._cv.wait_for(ready)
            if self._stop:
                return "stop"
            r, b, d = self._verdict
            return d if (r == round_id and b == batch) or d != "commit" else "abort"

    def _aborted(self, round_id):
        with self._cv:
            r, _, d = self._verdict
            return self._stop or (r == round_id and d != "commit") or r > round_id

    def _planner_main(self):
        if self._device.type == "cuda" and self._device.index is not None:
            torch.cuda.set_device(self._device)  # the current device is per thread; streams and NCCL follow it
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._job is not None)
                if self._stop:
                    return
                job, self._job = self._job, None
            outcome = "abort"
            try:
                outcome = self._run_round(job)
            except Exception as e:  # noqa: BLE001  (any failure fails the round, never the thread)
                with self._cv:
                    self._planner_error = f"rank {self.rank}: {type(e).__name__}: {e}"
                    self._vote[2] = _omni.StagePhase.failed
                    self._cv.notify_all()
                outcome = self._wait_verdict(job.round, 1 << 62)
            finally:
                with self._cv:
                    if self._prepared is not None:
                        self._stats["staging_bytes"] -= self._prepared.staging_bytes
                        self._prepared = None
                    self._vote = [-1, 0, _omni.StagePhase.idle, False, 0]
                    self._cv.notify_all()
            if outcome in ("abort", "stop"):
                self._transfer_stale = True
            if outcome == "stop":
                return

    def _fresh_transfer_group(self):
        """Replaces the transfer group after an aborted round (collective: every rank's
        planner does it at the start of the same round)."""
        self._transfer_pg = None
        self._transfer_gen += 1
        self._transfer_pg = make_group(self._backend, self._store, f"{self._prefix}/transfer/{self._transfer_gen}",
                                       self.rank, self.num_ranks, self._opts.transfer_timeout_ms / 1e3, self._factory)
        self._transfer_stale = False
        with self._cv:
            self._stats["transfer_groups"] += 1

    def _plan(self, load, current):
        """The next placement (without shares), planned here or received from the leader."""
        t0 = time.perf_counter()
        slots = [current.slots_per_rank(l) for l in range(self.num_layers)]
        leader = self._opts.plan_on == "leader"
        nxt, err = None, None
        if not leader or self.rank == 0:
            try:
                # How the plan is served, for omni's move prices: one window per re-plan
                # interval, this manager's expert bytes (ServingModel).
                nxt = self._planner.plan(load, num_ranks=self.num_ranks, slots_per_rank=slots,
                                         topology=self._topology, current=current,
                                         window_steps=self._opts.replan_interval_steps,
                                         interval_steps=self._opts.replan_interval_steps,
                                         expert_bytes=float(self._slot_bytes[0])).placement.without_shares()
            except Exception as e:  # noqa: BLE001  (the leader must still broadcast)
                err = e
        if leader:
            G = self.tables.phy2log.shape[1]
            buf = torch.full((self.num_layers * G + 1,), -1, dtype=torch.int64)
            if self.rank == 0:
                buf[0] = 0 if err is not None else 1
                if nxt is not None:
                    buf[1:].view(self.num_layers, G).copy_(torch.from_numpy(nxt.phy2log_matrix().astype(np.int64)))
            dev = buf.to(self._comm_device)
            broadcast(self._transfer_pg, dev, 0)
            buf = dev.cpu()
            if int(buf[0]) != 1:
                raise err if err is not None else RuntimeError("the leader (group rank 0) failed to plan")
            rows = buf[1:].view(self.num_layers, G).numpy()
            nxt = _omni.Placement([rows[l, :self.num_ranks * slots[l]] for l in range(self.num_layers)],
                                  num_ranks=self.num_ranks, num_experts=self.num_experts)
        elif err is not None:
            raise err
        with self._cv:
            self._stats["planning_seconds"] += time.perf_counter() - t0
        return nxt

    def _run_round(self, job):
        if self._transfer_stale:
            self._fresh_transfer_group()
        if job.window_ready is not None:
            job.window_ready.synchronize()
        # 1. The window summed over the ranks (a shift round's is summed already).
        if not job.reduced:
            all_reduce(self._transfer_pg, job.window, dist.ReduceOp.SUM)
        load = _omni.LoadMatrix(job.window.cpu().numpy())
        with self._cv:
            self._planned_on = (job.round, load)  # the shift checks' promise is priced on it
        current = job.base
        # 2. Plan; keep the placement unless it is worth moving.
        nxt = self._plan(load, current)
        plan_sum = _omni.vote_checksum(nxt.checksum)
        before = _omni.placement_balance(current, load).mean_max_over_mean
        after = _omni.placement_balance(nxt, load).mean_max_over_mean
        with self._cv:
            self._stats["last_predicted_before"] = before
            self._stats["last_predicted_after"] = after
        changed = [l for l in range(self.num_layers)
                   if not np.array_equal(current.phy2log(l), nxt.phy2log(l))]
        # min_gain 0 (default) takes every changed plan: omni plans for the next
        # interval and may fit this window worse than the placement in force on
        # purpose; only an explicit min_gain > 0 judges a plan by this window.
        if not changed or (self._opts.min_gain > 0 and before - after < self._opts.min_gain):
            self._set_vote(job.round, 0, _omni.StagePhase.no_change, True, plan_sum)
            return self._wait_verdict(job.round, 0)
        # 3. The transfers: one migration round, every source read from the placement in force.
        migration = _omni.diff(current, nxt, self._topology, expert_bytes=self._slot_bytes, max_per_round=0)
        transfers = migration.transfers
        batches = layer_batches(changed, transfers, self.num_ranks, self._opts.staging_bytes_per_rank,
                                self._opts.layers_per_commit)
        # 4. Stage and hand over one batch at a time.
        rows_now = [np.asarray(current.phy2log(l)) for l in range(self.num_layers)]
        for b, layers in enumerate(batches):
            if self._aborted(job.round):
                return "abort"
            last = b + 1 == len(batches)
            prep = _Prepared(job.round, b, last)
            for l in layers:
                rows_now[l] = np.asarray(nxt.phy2log(l))
                prep.rows.append(self.tables.layer_rows(nxt, l))
            prep.placement = _omni.Placement(rows_now, num_ranks=self.num_ranks, num_experts=self.num_experts)
            batch_rows = transfers[np.isin(transfers[:, _LAYER], layers)]
            t0 = time.perf_counter()
            self._stage(job.round, b, batch_rows, prep)
            with self._cv:
                self._stats["transfer_seconds"] += time.perf_counter() - t0
                self._prepared = prep
                self._vote = [job.round, b, _omni.StagePhase.ready, last, plan_sum]
                self._cv.notify_all()
            outcome = self._wait_verdict(job.round, b)
            if outcome != "commit":
                return outcome
        return "commit"

    def _stage(self, round_id, batch, rows, prep):
        """Receives this rank's destinations of one batch into new staging tensors (and sends
        its sources), in the global transfer order that every rank shares. Planner thread."""
        if self._commit_event is not None:
            self._commit_event.synchronize()  # CUDA: the last commit's copies are in the slots
        me, opts = self.rank, self._opts
        p2p = P2PBatch(self._transfer_pg, self._backend)
        keep = []  # host copies of CUDA rows sent through gloo, alive until the batch is done
        tag = 0
        try:
            for t in rows:
                l, e, src, src_slot, dst, dst_slot, nbytes = (int(t[_LAYER]), int(t[_EXPERT]), int(t[_SRC_RANK]),
                                                              int(t[_SRC_SLOT]), int(t[_DST_RANK]),
                                                              int(t[_DST_SLOT]), int(t[_BYTES]))
                weights = self._weights[l]
                event = TransferEvent(round_id, batch, l, e, src, src_slot, dst, dst_slot, nbytes)
                what = f"round {round_id}, batch {batch}, layer {l}, expert {e}"
                if src == me and dst != me:
                    if opts.before_send is not None:
                        opts.before_send(event)
                    for k, w in enumerate(weights):
                        row = w[src_slot]
                        if row.device != self._comm_device:
                            row = row.to(self._comm_device)
                            keep.append(row)
                        p2p.add_send(row, dst, tag + k, f"rank {me}: {what}: sending slot {src_slot} to rank {dst}")
                elif dst == me:
                    if opts.before_transfer is not None:
                        opts.before_transfer(event)
                    staged = []
                    for k, w in enumerate(weights):
                        where = self._device if src == me else self._comm_device
                        st = torch.empty(w.shape[1:], dtype=w.dtype, device=where)
                        if src == me:
                            st.copy_(w[src_slot])
                        else:
                            p2p.add_recv(st, src, tag + k,
                                         f"rank {me}: {what}: receiving from rank {src} into slot {dst_slot}")
                        staged.append(st)
                    prep.staging.append((l, dst_slot, staged))
                    prep.staging_bytes += nbytes
                    prep.bytes_received += nbytes
                    with self._cv:
                        self._stats["staging_bytes"] += nbytes
                        self._stats["max_staging_bytes"] = max(self._stats["max_staging_bytes"],
                                                               self._stats["staging_bytes"])
                prep.experts_moved += 1
                prep.bytes_moved += nbytes
                tag += len(weights)
            p2p.run()
        except BaseException:
            with self._cv:
                self._stats["staging_bytes"] -= prep.staging_bytes
            prep.staging.clear()
            raise
        if self._device.type == "cuda":
            torch.cuda.current_stream(self._device).synchronize()  # local copies done before voting ready
        del keep

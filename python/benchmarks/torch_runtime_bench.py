#!/usr/bin/python3
"""Costs of omniplacement.torch: engine-thread CPU per step, and transfer bandwidth through gloo.

1. engine: --nprocs processes (gloo) run PlacementManager steps with no model: every step records
   and dispatches --tokens x top-4 ids in each of 12 layers (60 experts, the Qwen1.5-MoE shape; ids
   drawn from a distribution whose hot experts move every 20 steps), then calls step_boundary. The
   CPU time of the engine thread (time.thread_time) is split by kind of step: record + dispatch
   (every step), step_boundary without a vote, with a vote but no commit, and on a commit step
   (which copies the staged slots, --slot-kib each, into the weights and updates the tables).
2. bandwidth: rank 0 sends --slots slots of --slot-mib MiB to rank 1, (a) the way the manager
   stages a batch (all sends and receives posted at once on its own gloo group, received into
   fresh staging tensors, one Work per slot) and (b) with plain torch.distributed send/recv on the
   default group, one slot after another, into the same staging tensors. Best of --repeats.

    PYTHONPATH=build/python /usr/bin/python3 python/benchmarks/torch_runtime_bench.py
    ... --json

Prints the conditions (processes, threads, load average) with the figures. CPU times are of the
calling thread only; bandwidth is wall time, so it depends on what else the machine runs.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import omniplacement as op
from omniplacement import _torch_comm
from omniplacement.torch import Options, PlacementManager

L, E, K = 12, 60, 4


def engine_worker(rank, args, port, out):
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, None, False, timeout=datetime.timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=args.nprocs)
    S = E // args.nprocs + 1
    p = op.Placement.contiguous(L, args.nprocs, E, S)
    floats = args.slot_kib * 1024 // 4
    weights = [torch.randn(S, floats) for _ in range(L)]
    opts = Options(replan_interval_steps=args.interval, commit_cadence_steps=2, stage_wait_ms=10000)
    g = torch.Generator().manual_seed(rank)
    kinds, calls, bound = [], [], []
    with PlacementManager(p, weights, options=opts) as pm:
        for step in range(args.steps):
            probs = torch.ones(E)
            probs[(step // 20 * 7) % E:(step // 20 * 7) % E + 6] = 20.0
            ids = [torch.multinomial(probs.expand(args.tokens, -1), K, generator=g) for _ in range(L)]
            c0 = time.thread_time()
            for l in range(L):
                pm.record(l, ids[l])
                pm.dispatch(l, ids[l])
            c1 = time.thread_time()
            d = pm.step_boundary(step)
            c2 = time.thread_time()
            calls.append(c1 - c0)
            bound.append(c2 - c1)
            kinds.append(d or "none")
        stats = pm.stats()
    torch.save({"kinds": kinds, "calls": calls, "bound": bound, "stats": stats}, os.path.join(out, f"e{rank}.pt"))
    dist.destroy_process_group()


def bandwidth_worker(rank, args, port, out):
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, None, False, timeout=datetime.timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    pg = _torch_comm.make_group("gloo", store, "bench/transfer", rank, 2, 60)
    floats = args.slot_mib * (1 << 20) // 4
    slots = torch.randn(args.slots, floats, generator=torch.Generator().manual_seed(0))  # the same on both ranks
    best = {"manager_path": float("inf"), "plain_send_recv": float("inf")}
    for _ in range(args.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        batch = _torch_comm.P2PBatch(pg, "gloo")
        staged = []
        for s in range(args.slots):
            if rank == 0:
                batch.add_send(slots[s], 1, s, f"slot {s}")
            else:
                staged.append(torch.empty(floats))
                batch.add_recv(staged[-1], 0, s, f"slot {s}")
        batch.run()
        best["manager_path"] = min(best["manager_path"], time.perf_counter() - t0)
        if rank == 1 and not all(torch.equal(t, slots[s]) for s, t in enumerate(staged)):
            raise AssertionError("manager path: received slots differ from the sent ones")
        dist.barrier()
        t0 = time.perf_counter()
        staged = []
        for s in range(args.slots):
            if rank == 0:
                dist.send(slots[s], 1, tag=s)
            else:
                staged.append(torch.empty(floats))
                dist.recv(staged[-1], 0, tag=s)
        best["plain_send_recv"] = min(best["plain_send_recv"], time.perf_counter() - t0)
        if rank == 1 and not all(torch.equal(t, slots[s]) for s, t in enumerate(staged)):
            raise AssertionError("plain send/recv: received slots differ from the sent ones")
    if rank == 1:
        torch.save(best, os.path.join(out, "bw.pt"))
    dist.destroy_process_group()


def launch(fn, nprocs, args, files):
    """Runs fn(rank, args, port, out_dir) in nprocs processes; returns the torch.load of `files` (names in out_dir)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "omniplacement", "omniplacement.torch"])
    store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=60), wait_for_workers=False)
    with tempfile.TemporaryDirectory(prefix="torch_runtime_bench_") as out:
        procs = [ctx.Process(target=fn, args=(r, args, store.port, out)) for r in range(nprocs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"a worker failed: exit codes {[p.exitcode for p in procs]}")
        return [torch.load(os.path.join(out, f)) for f in files]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  PYTHONPATH=build/python /usr/bin/python3 "
                                        "python/benchmarks/torch_runtime_bench.py --json")
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--interval", type=int, default=20, help="re-plan every this many steps")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per rank, step and layer")
    ap.add_argument("--slot-kib", type=int, default=64, help="bytes of one slot's weights, KiB (engine part)")
    ap.add_argument("--slots", type=int, default=16, help="slots sent (bandwidth part)")
    ap.add_argument("--slot-mib", type=int, default=4, help="MiB per slot (bandwidth part)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    runs = launch(engine_worker, args.nprocs, args, [f"e{r}.pt" for r in range(args.nprocs)])
    kinds = np.array([k for r in runs for k in r["kinds"]])
    calls = np.array([c for r in runs for c in r["calls"]])
    bound = np.array([b for r in runs for b in r["bound"]])
    engine = {"record_dispatch_us_per_step": float(calls.mean() * 1e6),
              "record_dispatch_us_per_layer": float(calls.mean() * 1e6 / L)}
    for name, sel in (("no_vote", kinds == "none"), ("vote_no_commit", (kinds != "none") & (kinds != "commit")),
                      ("vote_start_round", kinds == "start-round"), ("vote_wait", kinds == "wait"),
                      ("commit", kinds == "commit")):
        if sel.any():
            engine[f"step_boundary_us_{name}"] = float(bound[sel].mean() * 1e6)
            engine[f"steps_{name}"] = int(sel.sum())
    s0 = runs[0]["stats"]
    engine.update(epochs=s0["epoch"], experts_moved=s0["experts_moved"],
                  bytes_received_rank0=s0["bytes_received"])
    bw, = launch(bandwidth_worker, 2, args, ["bw.pt"])
    total = args.slots * args.slot_mib * (1 << 20)
    bandwidth = {name: {"seconds": t, "GB_per_s": total / t / 1e9} for name, t in bw.items()}
    report = {"conditions": {"nprocs": args.nprocs, "torch_threads": 1, "load_average": os.getloadavg(),
                             "cpus": os.cpu_count(), "steps": args.steps, "tokens": args.tokens,
                             "slot_kib": args.slot_kib, "bytes_per_transfer_run": total},
              "engine_thread_cpu": engine, "bandwidth": bandwidth}
    if args.json:
        print(json.dumps(report))
        return 0
    c = report["conditions"]
    print(f"conditions: {c['nprocs']} processes (gloo, localhost), 1 torch thread each, {c['cpus']} CPUs, "
          f"load average {', '.join(f'{x:.1f}' for x in c['load_average'])}")
    print(f"engine thread CPU ({L} layers x {args.tokens} tokens x top-{K} per step, slots of {args.slot_kib} KiB):")
    for k, v in engine.items():
        print(f"  {k:32s} {v:.1f}" if isinstance(v, float) else f"  {k:32s} {v}")
    print(f"transfer of {args.slots} x {args.slot_mib} MiB, rank 0 -> rank 1, best of {args.repeats}:")
    for k, v in bandwidth.items():
        print(f"  {k:32s} {v['GB_per_s']:.2f} GB/s ({v['seconds'] * 1e3:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

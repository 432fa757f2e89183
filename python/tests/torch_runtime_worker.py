"""Multi-process scenarios for test_torch_runtime.py: N processes (gloo) each run an
omniplacement.torch.PlacementManager on a small model with no collectives of the engine's own
(record, dispatch, step_boundary only), so that the manager's vote is the first collective to
meet a fault. Prints one JSON object: per rank, the decisions of every step, the stats, the
epoch, whether its slot weights and tables match the placement in force, and what happened.

    PYTHONPATH=build/python python3 torch_runtime_worker.py --scenario planner-fail --nprocs 3

Scenarios (rank 1 is the faulty one):
  planner-fail  rank 1's before_transfer hook raises in round 1: every rank must abort round 1
                at the same step, keep its placement, and commit later rounds.
  kill          rank 1 exits (os._exit) in its first weight send of round 1: the survivors'
                transfers fail, their vote fails (AgreementError), the round aborts, the old
                placement stays, and they keep stepping on it (dispatch still works).
  shift         no faults; the routing is the same every step (steady) until --shift-step, where
                every token of every layer goes to one other expert; replan_interval_steps 40 and
                --shift-check steps per shift check (0: off). --shift-step -1: steady throughout.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import omniplacement as op
from omniplacement.torch import AgreementError, Options, PlacementManager, RoutingTables

L, E, T, K, HIDDEN = 3, 12, 16, 2, 4
KILL_EXIT = 17


def expert_row(layer, expert):
    """The weights of one expert: a row any wrong copy would change."""
    return torch.arange(HIDDEN, dtype=torch.float32) + 1000 * layer + 10 * expert


def routing(step, rank, layer):
    """Hot experts shift with the step so that every round moves experts."""
    g = torch.Generator().manual_seed((step * 31 + rank) * 7 + layer)
    hot = (step // 6 + layer) % E
    ids = torch.randint(0, E, (T, K), generator=g)
    ids[: T // 2, 0] = hot
    return ids


SHIFT_INTERVAL = 40


def steady_routing(step, rank, layer, shift_step):
    """The same ids every step (so each check's steps cost exactly what the plan promised)
    until shift_step; from there on every token takes expert (layer + 6) % E."""
    if 0 <= shift_step <= step:
        return torch.full((T, K), (layer + 6) % E, dtype=torch.int64)
    t = torch.arange(T)
    ids = torch.stack([(t + 5 * rank + layer) % E, torch.where(t < T // 2, layer % E, (7 * t + rank) % E)], 1)
    return ids


def worker(rank, args, port, out_dir):
    torch.set_num_threads(1)
    res = {"rank": rank, "status": "ok", "error": "", "decisions": [], "agreement_error_step": None}
    try:
        store = dist.TCPStore("127.0.0.1", port, None, False, timeout=datetime.timedelta(seconds=60))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=args.nprocs,
                                timeout=datetime.timedelta(seconds=60))
        run(rank, args, res)
    except Exception:  # noqa: BLE001
        res["status"] = "error"
        res["error"] = traceback.format_exc()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)


def run(rank, args, res):
    N = args.nprocs
    S = E // N + 1
    placement = op.Placement.contiguous(L, N, E, S)
    weights = [torch.zeros(S, HIDDEN) for _ in range(L)]
    for l in range(L):
        for s in range(S):
            e = placement.expert_at(l, rank * S + s)
            if e >= 0:
                weights[l][s] = expert_row(l, e)
    fired = {"done": False}

    def before_transfer(event):
        if args.scenario == "planner-fail" and rank == 1 and event.round == 1:
            raise RuntimeError("test hook: receive refused")

    def before_send(event):
        if args.scenario == "kill" and rank == 1 and event.round >= 1 and not fired["done"]:
            fired["done"] = True
            os._exit(KILL_EXIT)

    # omni(forecast=false) fits each window and moves at every round: the faults under test
    # need transfers (the default omni keeps a placement whose moves would not pay here).
    opts = Options(planner_spec="omni(forecast=false)", replan_interval_steps=6, commit_cadence_steps=2, stage_wait_ms=20000,
                   transfer_timeout_ms=args.timeout_ms, collective_timeout_ms=30000,
                   before_transfer=before_transfer, before_send=before_send)
    if args.scenario == "shift":
        opts.replan_interval_steps = SHIFT_INTERVAL
        opts.shift_check_steps = args.shift_check
    pm = PlacementManager(placement, weights, options=opts)
    epoch_at_error = None
    for step in range(args.steps):
        for l in range(L):
            ids = (steady_routing(step, rank, l, args.shift_step) if args.scenario == "shift"
                   else routing(step, rank, l))
            pm.record(l, ids)
            slots = pm.dispatch(l, ids)
            # Serving check on the manager's side: every slot holds the expert asked for.
            if not torch.equal(pm.tables.phy2log[l][slots], ids):
                raise AssertionError(f"step {step} layer {l}: dispatch sent a token to a slot of another expert")
        try:
            res["decisions"].append(pm.step_boundary(step))
        except AgreementError as e:
            res["decisions"].append("agreement-error")
            res["agreement_error_step"] = step
            res["error"] = str(e)
            epoch_at_error = pm.epoch
    t0 = time.monotonic()
    pm.close()
    res["close_seconds"] = time.monotonic() - t0
    res["stats"] = pm.stats()
    res["epoch"] = pm.epoch
    res["epoch_at_error"] = epoch_at_error
    res["placement_checksum"] = pm.placement.checksum
    p = pm.placement
    res["weights_consistent"] = all(torch.equal(weights[l][s], expert_row(l, p.expert_at(l, rank * S + s)))
                                    for l in range(L) for s in range(S) if p.expert_at(l, rank * S + s) >= 0)
    fresh = RoutingTables(p, rank, "cpu")
    res["tables_consistent"] = all(torch.equal(getattr(fresh, n), getattr(pm.tables, n))
                                   for n in ("phy2log", "log2phy", "logcnt", "local_phy2log"))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=["planner-fail", "kill", "shift"], required=True)
    ap.add_argument("--nprocs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--shift-step", type=int, default=-1, help="shift: the step the routing changes (-1: never)")
    ap.add_argument("--shift-check", type=int, default=4, help="shift: Options.shift_check_steps")
    return ap.parse_args(argv)


def run_scenario(args):
    """Runs the processes; returns {"exit_codes", "hung", "ranks": {rank: result}}."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "omniplacement", "omniplacement.torch"])
    store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=60), wait_for_workers=False)
    with tempfile.TemporaryDirectory() as out_dir:
        procs = [ctx.Process(target=worker, args=(r, args, store.port, out_dir), daemon=True)
                 for r in range(args.nprocs)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + 120
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for r in hung:
            procs[r].kill()
        ranks = {}
        for r in range(args.nprocs):
            path = os.path.join(out_dir, f"rank{r}.json")
            if os.path.exists(path):
                with open(path) as f:
                    ranks[r] = json.load(f)
    # JSON keys are strings, as the printed form has them.
    return {"exit_codes": [p.exitcode for p in procs], "hung": hung, "ranks": {str(r): v for r, v in ranks.items()}}


def main():
    print(json.dumps(run_scenario(parse_args(sys.argv[1:]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

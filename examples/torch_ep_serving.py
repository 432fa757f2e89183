#!/usr/bin/python3
"""Expert-parallel MoE serving over N processes while the expert placement changes (omniplacement.torch).

N worker processes (torch.multiprocessing, gloo over localhost) serve a small torch MoE with
expert parallelism: 12 MoE layers of 60 experts, top-4, as Qwen1.5-MoE; each expert is two real
nn.Linear layers (hidden 16, ffn 32, with biases) whose parameters are rows of the rank's slot
tensors. The routing of every (step, rank, layer) is drawn from the shipped Qwen1.5-MoE series
(data/traces/qwen15moe_expert_freq_by_iteration.csv: bookcorpus, then wikitext, then wmt19, so
the hot experts shift). Every rank runs an omniplacement.torch.PlacementManager: it records the
routing, dispatches each (token, expert) pair to a replica, re-plans every --interval steps on its
planner thread, moves the changed experts' weights between the processes into staging tensors
while serving goes on, and switches every rank to the new placement at the same step. Tokens go
to their experts' ranks and back with two all-to-alls per layer.

Every output of every MoE layer is compared bit for bit with a dense single-process reference
(the parent process: the same seeds, the same weights, no placement). Weights and activations
are small integers held in float64, so every sum is exact in any order and a token served by the
wrong expert, or by half-copied weights, gives a different output.

    PYTHONPATH=build/python /usr/bin/python3 examples/torch_ep_serving.py --nprocs 4
    PYTHONPATH=build/python /usr/bin/python3 examples/torch_ep_serving.py --nprocs 4 --json
    PYTHONPATH=build/python python3 examples/torch_ep_serving.py --nprocs 4 --device cuda

With --device cuda each process keeps its slot tensors, routing tables and counts on a GPU
(cuda:rank modulo the GPUs there are) and runs its experts there; the manager then records and
dispatches on the GPU, waits on CUDA events before it reads counts or slots, and stages the rows
it sends through host memory (gloo carries host tensors). The all-to-alls of tokens stay on the
host for the same reason.

The table (or JSON: wrong_outputs, epochs_committed, experts_moved, bytes_moved,
dynamic_max_over_mean, static_max_over_mean, ...) gives the max/mean rank load of blocks of
--metric-steps steps, averaged over layers and blocks: as served (dynamic) and as the initial
placement would have served the same tokens with the same dispatch rule (static); and the CPU
time the manager's calls took on the engine thread per step. Exit status 1 on any wrong output (or a worker that did not
report); 0 otherwise.

Fault injection (used by python/tests/test_torch_runtime.py): --fault timeout makes rank
--fault-rank sleep before its first weight send of round --fault-round or later, past
--transfer-timeout-ms, so that the round aborts and serving goes on; --fault kill makes it exit
there instead: the survivors' round aborts and, since a dead peer breaks every gloo group, they
stop serving cleanly and report it.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import omniplacement as op
import omniplacement.io as oio
from omniplacement.torch import Options, PlacementManager, RoutingTables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "data", "traces", "qwen15moe_expert_freq_by_iteration.csv")
PHASES = ["bookcorpus", "wikitext", "wmt19"]
KILL_EXIT = 17


# ----------------------------------------------------------------------------- the model
def expert_params(seed, layer, expert, hidden, ffn):
    """(w1 [ffn, hidden], b1 [ffn], w2 [hidden, ffn], b2 [hidden]) of one logical expert:
    integers in [-1, 1] (weights) and [-2, 2] (biases) as float64, from its own seed."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + layer) * 1009 + expert)
    w1 = torch.randint(-1, 2, (ffn, hidden), generator=g).double()
    b1 = torch.randint(-2, 3, (ffn,), generator=g).double()
    w2 = torch.randint(-1, 2, (hidden, ffn), generator=g).double()
    b2 = torch.randint(-2, 3, (hidden,), generator=g).double()
    return w1, b1, w2, b2


def step_input(seed, step, rank, tokens, hidden):
    """[tokens, hidden] float64 integers in [-4, 4]: the hidden states rank feeds at step."""
    g = torch.Generator().manual_seed((seed * 7919 + step) * 104729 + rank)
    return torch.randint(-4, 5, (tokens, hidden), generator=g).double()


def routing(freqs, seed, step, rank, layer, tokens, top_k, steps_per_window):
    """[tokens, top_k] int64 distinct expert ids drawn with the window's frequencies."""
    w = min(step // steps_per_window, len(freqs) - 1)
    g = torch.Generator().manual_seed(((seed * 1_000_033 + step) * 1013 + rank) * 101 + layer)
    probs = freqs[w][layer].expand(tokens, -1)
    return torch.multinomial(probs, top_k, replacement=False, generator=g)


def next_hidden(h, moe_out):
    """The residual stream between MoE layers, kept to small integers (exact arithmetic)."""
    return torch.remainder(h + moe_out, 9) - 4


class SlotExpert(nn.Module):
    """One slot's expert: relu(x @ w1.T + b1) @ w2.T + b2 through two nn.Linear whose
    parameters are views of row `slot` of the rank's slot tensors (so a commit that copies
    new weights into those rows changes this expert in place)."""

    def __init__(self, w1, b1, w2, b2, slot):
        super().__init__()
        self.fc1 = nn.Linear(w1.shape[2], w1.shape[1])
        self.fc2 = nn.Linear(w2.shape[2], w2.shape[1])
        self.fc1.weight = nn.Parameter(w1[slot], requires_grad=False)
        self.fc1.bias = nn.Parameter(b1[slot], requires_grad=False)
        self.fc2.weight = nn.Parameter(w2[slot], requires_grad=False)
        self.fc2.bias = nn.Parameter(b2[slot], requires_grad=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def read_windows(steps_per_window):
    """The Qwen1.5-MoE series as [num_windows] list of [layers, experts] float64 tensors."""
    series = oio.Trace.read_csv(TRACE).series(PHASES)
    return [torch.from_numpy(w.load.values()) for w in series], [w.group for w in series]


# ----------------------------------------------------------------------------- a worker
def worker(rank, args, port, out_dir):
    torch.set_num_threads(1)
    if args.device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    result = {"rank": rank, "status": "ok", "error": "", "steps_done": 0, "fault_fired": False}
    try:
        store = dist.TCPStore("127.0.0.1", port, None, False, timeout=datetime.timedelta(seconds=120))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=args.nprocs,
                                timeout=datetime.timedelta(seconds=120))
        serve(rank, args, result)
    except Exception:  # noqa: BLE001  (reported to the parent)
        result["status"] = "error"
        result["error"] = traceback.format_exc()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def make_hooks(rank, args, result):
    if args.fault == "none" or rank != args.fault_rank:
        return None

    def before_send(event):
        if result["fault_fired"] or event.round < args.fault_round:
            return
        result["fault_fired"] = True
        if args.fault == "kill":
            os._exit(KILL_EXIT)
        time.sleep(2 * args.transfer_timeout_ms / 1e3)

    return before_send


def serve(rank, args, result):
    N, L, E, K, H, F, T = args.nprocs, args.layers, args.experts, args.top_k, args.hidden, args.ffn, args.tokens
    freqs, _ = read_windows(args.steps_per_window)
    S = E // N + args.redundant
    placement = op.Placement.contiguous(L, N, E, S)
    dev = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    # This rank's slot tensors on its device, filled with the experts of the initial placement.
    w1, b1, w2, b2 = (torch.zeros(L, S, F, H, dtype=torch.float64, device=dev),
                      torch.zeros(L, S, F, dtype=torch.float64, device=dev),
                      torch.zeros(L, S, H, F, dtype=torch.float64, device=dev),
                      torch.zeros(L, S, H, dtype=torch.float64, device=dev))
    for l in range(L):
        for s in range(S):
            e = placement.expert_at(l, rank * S + s)
            if e >= 0:
                for dst, src in zip((w1, b1, w2, b2), expert_params(args.seed, l, e, H, F)):
                    dst[l, s].copy_(src)
    experts = [[SlotExpert(w1[l], b1[l], w2[l], b2[l], s) for s in range(S)] for l in range(L)]
    weights = [(w1[l], b1[l], w2[l], b2[l]) for l in range(L)]
    options = Options(planner_spec=args.planner, plan_on=args.plan_on, replan_interval_steps=args.interval,
                      commit_cadence_steps=args.cadence, layers_per_commit=args.layers_per_commit,
                      staging_bytes_per_rank=args.staging_bytes_per_rank, stage_wait_ms=args.stage_wait_ms,
                      transfer_timeout_ms=args.transfer_timeout_ms, collective_timeout_ms=args.collective_timeout_ms,
                      shift_check_steps=args.shift_check, shift_threshold=args.shift_threshold,
                      before_send=make_hooks(rank, args, result))
    outputs = torch.zeros(args.steps, L, T, H, dtype=torch.float64)
    served = torch.zeros(args.steps, L, dtype=torch.int64)
    cpu_calls = np.zeros(args.steps)      # record + dispatch, engine thread CPU seconds per step
    cpu_boundary = np.zeros(args.steps)   # step_boundary
    decisions = [None] * args.steps
    rows = T * K
    with PlacementManager(placement, weights, options=options) as pm:
        try:
            for step in range(args.steps):
                if step == args.corrupt_step and rank == 0:
                    w1[0] += 1  # the negative control of the tests: these outputs must be reported wrong
                h = step_input(args.seed, step, rank, T, H)
                for l in range(L):
                    ids = routing(freqs, args.seed, step, rank, l, T, K, args.steps_per_window)
                    c0 = time.thread_time()
                    pm.record(l, ids)
                    slots = pm.dispatch(l, ids)
                    cpu_calls[step] += time.thread_time() - c0
                    slots = slots.cpu()  # on the device (--device cuda); the all-to-all is on the host
                    Sl = pm.tables.slots_of(l)
                    dst, local = (slots // Sl).reshape(-1), (slots % Sl).reshape(-1)
                    # Fixed-capacity all-to-all: rows * N per rank; column H marks a row in use,
                    # column H + 1 carries the local slot.
                    send = torch.zeros(N, rows, H + 2, dtype=torch.float64)
                    tok = torch.arange(rows) // K
                    order = torch.argsort(dst, stable=True)
                    pos = torch.arange(rows) - torch.searchsorted(dst[order], dst[order])
                    send[dst[order], pos, :H] = h[tok[order]]
                    send[dst[order], pos, H] = 1
                    send[dst[order], pos, H + 1] = local[order].double()
                    recv = torch.empty_like(send)
                    dist.all_to_all_single(recv, send)
                    recv = recv.view(-1, H + 2)
                    y = torch.zeros(recv.shape[0], H, dtype=torch.float64)
                    used = recv[:, H] == 1
                    served[step, l] = int(used.sum())
                    slot_of = recv[:, H + 1].long()
                    for s in torch.unique(slot_of[used]).tolist():
                        sel = used & (slot_of == s)
                        y[sel] = experts[l][s](recv[sel, :H].to(dev)).cpu()
                    back = torch.empty_like(y)
                    dist.all_to_all_single(back, y)
                    back = back.view(N, rows, H)
                    out = torch.zeros(T, H, dtype=torch.float64)
                    out.index_add_(0, tok[order], back[dst[order], pos])
                    outputs[step, l] = out
                    h = next_hidden(h, out)
                c0 = time.thread_time()
                decisions[step] = pm.step_boundary(step)
                cpu_boundary[step] = time.thread_time() - c0
                result["steps_done"] = step + 1
        except Exception as e:  # noqa: BLE001  (a dead peer: stop serving, report)
            result["status"] = "stopped"
            result["error"] = f"{type(e).__name__}: {e}"
        result["epoch_before_close"] = pm.epoch
        pm.close()
        result["stats"] = pm.stats()
        result["epoch"] = pm.epoch
        result["placement_checksum"] = pm.placement.checksum
        result["weights_consistent"] = weights_match(pm, args, rank, weights)
        result["tables_consistent"] = tables_match(pm)
    result.update(outputs=outputs, served=served, cpu_calls=cpu_calls, cpu_boundary=cpu_boundary,
                  decisions=decisions)


def weights_match(pm, args, rank, weights):
    """Every slot of this rank holds exactly the weights of the expert the placement in force puts there."""
    p = pm.placement
    for l, ws in enumerate(weights):
        S = p.slots_per_rank(l)
        for s in range(S):
            e = p.expert_at(l, rank * S + s)
            if e >= 0 and not all(torch.equal(t[s].cpu(), ref)
                                  for t, ref in zip(ws, expert_params(args.seed, l, e, args.hidden, args.ffn))):
                return False
    return True


def tables_match(pm):
    """The device tables equal those built from the placement in force."""
    fresh = RoutingTables(pm.placement, pm.rank, "cpu", pm.tables.max_replicas)
    return all(torch.equal(getattr(fresh, n), getattr(pm.tables, n).cpu())
               for n in ("phy2log", "log2phy", "logcnt", "local_phy2log"))


# ----------------------------------------------------------------------------- the parent
def dense_reference(args, freqs):
    """[steps, N, L, T, H] outputs of every MoE layer with every expert in one process."""
    L, E, H, F = args.layers, args.experts, args.hidden, args.ffn
    params = [[expert_params(args.seed, l, e, H, F) for e in range(E)] for l in range(L)]
    W1 = [torch.stack([p[0] for p in params[l]]) for l in range(L)]
    B1 = [torch.stack([p[1] for p in params[l]]) for l in range(L)]
    W2 = [torch.stack([p[2] for p in params[l]]) for l in range(L)]
    B2 = [torch.stack([p[3] for p in params[l]]) for l in range(L)]
    ref = torch.zeros(args.steps, args.nprocs, L, args.tokens, H, dtype=torch.float64)
    ids_all = torch.zeros(args.steps, args.nprocs, L, args.tokens, args.top_k, dtype=torch.int64)
    for step in range(args.steps):
        for r in range(args.nprocs):
            h = step_input(args.seed, step, r, args.tokens, H)
            for l in range(L):
                ids = routing(freqs, args.seed, step, r, l, args.tokens, args.top_k, args.steps_per_window)
                ids_all[step, r, l] = ids
                a = torch.relu(torch.einsum("tkfh,th->tkf", W1[l][ids], h) + B1[l][ids])
                out = (torch.einsum("tkhf,tkf->tkh", W2[l][ids], a) + B2[l][ids]).sum(dim=1)
                ref[step, r, l] = out
                h = next_hidden(h, out)
    return ref, ids_all


def max_over_mean(loads, block):
    """loads [ranks, steps, layers] -> per block of `block` steps: the mean over layers of
    the max/mean rank load of the block's steps summed."""
    R, steps, L = loads.shape
    vals = []
    for b0 in range(0, steps, block):
        win = loads[:, b0:b0 + block].sum(axis=1)  # [ranks, layers]
        mean = win.mean(axis=0)
        ok = mean > 0
        vals.append((win.max(axis=0)[ok] / mean[ok]).mean())
    return np.array(vals)


def static_loads(args, ids_all):
    """[ranks, steps, layers] tokens each rank would serve under the initial placement."""
    S = args.experts // args.nprocs + args.redundant
    p = op.Placement.contiguous(args.layers, args.nprocs, args.experts, S)
    tables = [RoutingTables(p, r, "cpu") for r in range(args.nprocs)]
    loads = np.zeros((args.nprocs, args.steps, args.layers), dtype=np.int64)
    for step in range(args.steps):
        for r in range(args.nprocs):
            for l in range(args.layers):
                owner = tables[r].dispatch(l, ids_all[step, r, l]).reshape(-1) // S
                loads[:, step, l] += np.bincount(owner.numpy(), minlength=args.nprocs)
    return loads


def run(args):
    """Starts the workers, waits for them, checks every output. Returns (report dict, exit code)."""
    freqs, groups = read_windows(args.steps_per_window)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "omniplacement", "omniplacement.torch"])
    store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=120),
                          wait_for_workers=False)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="torch_ep_serving_") as out_dir:
        procs = [ctx.Process(target=worker, args=(r, args, store.port, out_dir), daemon=True)
                 for r in range(args.nprocs)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + args.timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for r in hung:
            procs[r].kill()
        exit_codes = [p.exitcode for p in procs]
        results = {}
        for r in range(args.nprocs):
            path = os.path.join(out_dir, f"rank{r}.pt")
            if os.path.exists(path):
                results[r] = torch.load(path, weights_only=False)  # our workers' own reports (numpy arrays)
    wall = time.perf_counter() - t0
    ref, ids_all = dense_reference(args, freqs)
    report = {"nprocs": args.nprocs, "device": args.device, "steps": args.steps, "planner": args.planner,
              "wall_seconds": round(wall, 2), "metric_steps": args.metric_steps,
              "exit_codes": exit_codes, "hung_ranks": hung, "fault": args.fault}
    wrong = checked = 0
    problems = []
    killed = args.fault_rank if args.fault == "kill" else None
    for r in range(args.nprocs):
        res = results.get(r)
        if res is None:
            if r != killed or exit_codes[r] != KILL_EXIT:
                problems.append(f"rank {r} did not report (exit code {exit_codes[r]})")
            continue
        if res["status"] == "error":
            problems.append(f"rank {r} failed:\n{res['error']}")
            continue
        done = res["steps_done"]
        diff = (res["outputs"][:done] != ref[:done, r]).any(dim=-1)  # [steps, layers, tokens]
        wrong += int(diff.sum())
        checked += diff.numel()
        if not res.get("weights_consistent", False) or not res.get("tables_consistent", False):
            problems.append(f"rank {r}: slot weights or routing tables differ from the placement in force")
    report.update(wrong_outputs=wrong, outputs_checked=checked)
    live = [results[r] for r in sorted(results) if results[r]["status"] != "error"]
    if live:
        s0 = live[0]["stats"]
        report.update(epochs_committed=s0["epoch"], rounds_started=s0["rounds_started"],
                      rounds_completed=s0["rounds_completed"], rounds_no_change=s0["rounds_no_change"],
                      rounds_aborted=s0["rounds_aborted"], rounds_closed=s0["rounds_closed"], aborts=s0["aborts"],
                      shift_checks=s0["shift_checks"], shift_rounds=s0["shift_rounds"],
                      experts_moved=s0["experts_moved"], bytes_moved=s0["bytes_moved"],
                      transfer_groups=s0["transfer_groups"],
                      max_staging_bytes=max(res["stats"]["max_staging_bytes"] for res in live),
                      epochs=[res["epoch"] for res in live],
                      statuses=[res["status"] for res in live], errors=[res["error"][:300] for res in live],
                      fault_fired=any(res["fault_fired"] for res in live) or killed is not None and
                      exit_codes[killed] == KILL_EXIT)
        if len({res["epoch"] for res in live}) > 1 or len({res["placement_checksum"] for res in live}) > 1:
            problems.append("the ranks ended on different epochs or placements")
    if len(live) == args.nprocs and all(res["status"] == "ok" for res in live):
        dyn = np.stack([res["served"].numpy() for res in live])
        sta = static_loads(args, ids_all)
        d, s = max_over_mean(dyn, args.metric_steps), max_over_mean(sta, args.metric_steps)
        report.update(dynamic_max_over_mean=round(float(d.mean()), 4), static_max_over_mean=round(float(s.mean()), 4))
        phase_of = [groups[min(b * args.metric_steps // args.steps_per_window, len(groups) - 1)] for b in range(len(d))]
        phases = []
        for name in PHASES:
            idx = [b for b in range(len(d)) if phase_of[b] == name]
            if idx:
                phases.append({"phase": name, "blocks": len(idx), "dynamic": round(float(d[idx].mean()), 4),
                               "static": round(float(s[idx].mean()), 4)})
        report["phases"] = phases
        report["engine_cpu_us"] = engine_cpu(live)
    if wrong:
        problems.append(f"{wrong} wrong outputs")
    report["problems"] = problems
    return report, (1 if problems else 0)


def engine_cpu(live):
    """Mean engine-thread CPU microseconds per step spent in the manager's calls, by kind of step."""
    calls = np.concatenate([res["cpu_calls"] for res in live])
    bound = np.concatenate([res["cpu_boundary"] for res in live])
    kinds = np.array([d or "none" for res in live for d in res["decisions"]])
    out = {"record_dispatch_per_step": round(float(calls.mean() * 1e6), 1)}
    for name, sel in (("boundary_no_vote", kinds == "none"),
                      ("boundary_vote_no_commit", (kinds != "none") & (kinds != "commit")),
                      ("boundary_commit", kinds == "commit")):
        if sel.any():
            out[name] = round(float(bound[sel].mean() * 1e6), 1)
            out[name + "_steps"] = int(sel.sum())
    return out


def print_table(report):
    print(f"  processes                {report['nprocs']} (gloo), {report['steps']} steps, planner "
          f"'{report['planner']}', {report['wall_seconds']} s wall")
    for key in ("rounds_started", "shift_rounds", "rounds_completed", "rounds_no_change", "rounds_aborted",
                "epochs_committed",
                "experts_moved", "bytes_moved", "max_staging_bytes", "outputs_checked", "wrong_outputs"):
        if key in report:
            print(f"  {key.replace('_', ' '):24s} {report[key]}")
    for a in report.get("aborts", []):
        print(f"  abort                    {a}")
    if "phases" in report:
        print(f"  max/mean rank load per {report['metric_steps']} steps (mean over layers and blocks):")
        print("  phase         blocks   dynamic   static")
        for p in report["phases"]:
            print(f"  {p['phase']:12s} {p['blocks']:7d}   {p['dynamic']:7.3f}  {p['static']:7.3f}")
        print(f"  {'all':12s} {'':7s}   {report['dynamic_max_over_mean']:7.3f}  {report['static_max_over_mean']:7.3f}")
        print("  engine-thread CPU (us per step): " +
              ", ".join(f"{k} {v}" for k, v in report["engine_cpu_us"].items()))
    for p in report["problems"]:
        print("  PROBLEM:", p)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  PYTHONPATH=build/python /usr/bin/python3 examples/torch_ep_serving.py --nprocs 4 --json")
    ap.add_argument("--nprocs", type=int, default=4, help="worker processes (ranks); must divide --experts")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where each process keeps its slot tensors and runs its experts "
                         "(cuda: cuda:rank modulo the GPUs there are; needs a CUDA build of torch)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--steps", type=int, default=120, help="serving steps (forward passes)")
    ap.add_argument("--steps-per-window", type=int, default=2, help="steps per window of the trace")
    ap.add_argument("--interval", type=int, default=10, help="re-plan every this many steps")
    ap.add_argument("--metric-steps", type=int, default=10,
                    help="max/mean rank load is taken over blocks of this many steps summed")
    ap.add_argument("--shift-check", type=int, default=-1,
                    help="shift check every this many steps (0: off; -1: a tenth of --interval, at least 1)")
    ap.add_argument("--shift-threshold", type=float, default=0.07, help="max/mean above the plan's promise")
    ap.add_argument("--cadence", type=int, default=2, help="vote every this many steps during a round")
    ap.add_argument("--layers-per-commit", type=int, default=4, help="layers per commit (0: as staging allows)")
    ap.add_argument("--staging-bytes-per-rank", type=int, default=1 << 30, help="staging per rank and batch")
    ap.add_argument("--stage-wait-ms", type=int, default=10000,
                    help="each engine waits up to this for its staging before voting (reproducible commits; 0: never)")
    ap.add_argument("--planner", default="omni", help="planner spec string")
    ap.add_argument("--plan-on", choices=["all", "leader"], default="all", help="every rank plans, or rank 0")
    ap.add_argument("--redundant", type=int, default=1, help="redundant slots per rank and layer")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per rank and step")
    ap.add_argument("--layers", type=int, default=12, help="MoE layers (at most the trace's 12)")
    ap.add_argument("--experts", type=int, default=60, help="experts per layer (the trace's 60)")
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--ffn", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--transfer-timeout-ms", type=int, default=30000)
    ap.add_argument("--collective-timeout-ms", type=int, default=30000)
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a worker counts as hung")
    ap.add_argument("--fault", choices=["none", "timeout", "kill"], default="none", help="fault injection (tests)")
    ap.add_argument("--fault-rank", type=int, default=1)
    ap.add_argument("--fault-round", type=int, default=1)
    ap.add_argument("--corrupt-step", type=int, default=-1,
                    help="rank 0 corrupts its layer-0 weights at this step (tests: the check must fail)")
    args = ap.parse_args(argv)
    if args.nprocs < 2 or args.experts % args.nprocs:
        ap.error(f"--nprocs must be >= 2 and divide --experts ({args.experts})")
    if not 1 <= args.layers <= 12 or args.experts != 60:
        ap.error("the Qwen1.5-MoE trace has 12 layers of 60 experts: --layers in [1, 12], --experts 60")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report, code = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
        print("OK" if code == 0 else "FAILED")
    return code


if __name__ == "__main__":
    sys.exit(main())

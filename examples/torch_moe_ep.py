#!/usr/bin/python3
"""A PyTorch MoE layer with expert parallelism simulated over N ranks on one CPU.

What it shows, with the OmniPlacement SDK doing the placement work:
  1. record routing: every forward pass hands its top-k expert ids to an
     ActivationRecorder (omniplacement.ActivationRecorder);
  2. dispatch: each (token, expert) pair goes to one replica of the expert, read
     from the ExpertMap of the placement in force (log2phy / logcnt);
  3. re-place: every --window steps the recorded window is planned
     (omniplacement.Planner, spec --planner) into a new placement;
  4. move weights: the slots whose expert changes are filled from a replica that
     holds it (same rank first), staged first and committed together, so no slot
     is overwritten while it is still a source.
Every step checks that the expert-parallel output equals the same MoE layers
computed without placement (dense reference), and prints the rank balance
(measured from the tokens each rank computed) before and after each re-placement.
The workload shifts half-way (other experts get hot), which is what dynamic
placement is for.

    PYTHONPATH=build/python /usr/bin/python3 examples/torch_moe_ep.py --ranks 4 --experts 16
    ... --json demo.json   # per-step balance, for omniplacement.plot.imbalance_over_time

Exit status 0 only when every step matched the reference and re-placement
improved the balance over the static placement on the shifted workload.
"""
import argparse
import json
import sys
import time

import torch
from torch import nn

import omniplacement as op


class Expert(nn.Module):
    """A small feed-forward expert: w2 @ gelu(w1 @ x)."""

    def __init__(self, hidden, ffn):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.w2(torch.nn.functional.gelu(self.w1(x)))


class MoELayer(nn.Module):
    """Router + experts, top-k with softmax gates: the dense reference (no placement)."""

    def __init__(self, hidden, ffn, num_experts, top_k):
        super().__init__()
        self.router = nn.Linear(hidden, num_experts, bias=False)
        self.experts = nn.ModuleList(Expert(hidden, ffn) for _ in range(num_experts))
        self.top_k = top_k

    def route(self, x):
        gates, ids = torch.topk(self.router(x), self.top_k, dim=-1)
        return ids, torch.softmax(gates, dim=-1)

    def forward(self, x):
        ids, gates = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, k = torch.nonzero(ids == e, as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, expert(x[tok]) * gates[tok, k, None])
        return out


class Rank:
    """One simulated device: slot storage for every MoE layer (the weights it holds)."""

    def __init__(self, num_layers, slots, hidden, ffn):
        self.w1 = torch.zeros(num_layers, slots, ffn, hidden)
        self.w2 = torch.zeros(num_layers, slots, hidden, ffn)


class ExpertParallelMoE:
    """The same MoE layers served by N ranks with a placement from the SDK."""

    def __init__(self, layers, num_ranks, slots_per_rank, recorder):
        self.layers = layers
        hidden = layers[0].router.in_features
        ffn = layers[0].experts[0].w1.out_features
        self.num_ranks, self.slots = num_ranks, slots_per_rank
        self.ranks = [Rank(len(layers), slots_per_rank, hidden, ffn) for _ in range(num_ranks)]
        self.recorder = recorder
        self.moved_slots = 0
        self.moved_bytes = 0
        num_experts = len(layers[0].experts)
        self.install(op.Placement.contiguous(len(layers), num_ranks, num_experts, slots_per_rank), initial=True)

    def install(self, placement, initial=False):
        """Moves weights for every slot whose expert changes, then switches the expert map."""
        if initial:
            for l, layer in enumerate(self.layers):
                for g, e in enumerate(placement.phy2log(l)):
                    if e >= 0:
                        r, s = divmod(g, self.slots)
                        self.ranks[r].w1[l, s] = layer.experts[e].w1.weight.detach()
                        self.ranks[r].w2[l, s] = layer.experts[e].w2.weight.detach()
        else:
            self.migrate(self.placement, placement)
        self.placement = placement
        emap = op.ExpertMap(placement)
        self.log2phy = torch.from_numpy(emap.log2phy().astype("int64"))  # [L, E, max_replicas]
        self.logcnt = torch.from_numpy(emap.logcnt().astype("int64"))    # [L, E]

    def migrate(self, old, new):
        """Stage every changed slot from a source replica in the old placement, then commit."""
        staged = []
        for l in range(new.num_layers):
            before, after = old.phy2log(l), new.phy2log(l)
            for g in range(new.num_slots(l)):
                e = int(after[g])
                if e < 0 or e == before[g]:
                    continue
                r, s = divmod(g, self.slots)
                sources = [int(x) for x in old.replicas(l, e)]
                src = next((x for x in sources if x // self.slots == r), sources[0])  # same rank first
                sr, ss = divmod(src, self.slots)
                w1, w2 = self.ranks[sr].w1[l, ss].clone(), self.ranks[sr].w2[l, ss].clone()
                staged.append((l, r, s, w1, w2))
                if sr != r:
                    self.moved_bytes += (w1.numel() + w2.numel()) * w1.element_size()
        for l, r, s, w1, w2 in staged:  # commit: every source was read before any slot is overwritten
            self.ranks[r].w1[l, s] = w1
            self.ranks[r].w2[l, s] = w2
        self.moved_slots += len(staged)

    def forward(self, x):
        """Runs every layer; returns the output and the tokens each rank computed, [L, N]."""
        rank_tokens = torch.zeros(len(self.layers), self.num_ranks, dtype=torch.int64)
        token_index = torch.arange(x.shape[0])
        for l, layer in enumerate(self.layers):
            ids, gates = layer.route(x)
            self.recorder.record(l, ids)
            # Dispatch: token t's k-th expert e goes to replica (t mod logcnt[e]) of e.
            cnt = self.logcnt[l][ids]
            replica = (token_index[:, None] % cnt)
            slot = self.log2phy[l][ids, replica]                      # global slot, [T, k]
            rank, local = slot // self.slots, slot % self.slots
            out = torch.zeros_like(x)
            for r in range(self.num_ranks):
                store = self.ranks[r]
                for s in range(self.slots):
                    tok, k = torch.nonzero((rank == r) & (local == s), as_tuple=True)
                    if tok.numel() == 0:
                        continue
                    h = torch.nn.functional.gelu(x[tok] @ store.w1[l, s].T) @ store.w2[l, s].T
                    out.index_add_(0, tok, h * gates[tok, k, None])
                    rank_tokens[l, r] += tok.numel()
            x = x + out  # residual, so the next layer sees this one's output
        return x, rank_tokens


def dense_forward(layers, x):
    """The reference: every layer without placement. Returns the output and each layer's input."""
    inputs = []
    for layer in layers:
        inputs.append(x)
        x = x + layer(x)
    return x, inputs


def workload(layers, hot, tokens, generator):
    """Tokens near the router rows of the `hot` experts of layer 0 (skewed routing)."""
    rows = layers[0].router.weight.detach()
    pick = torch.tensor(hot)[torch.randint(len(hot), (tokens,), generator=generator)]
    noise = torch.randn(tokens, rows.shape[1], generator=generator)
    return noise + 4.0 * rows[pick] / rows[pick].norm(dim=1, keepdim=True)


def max_over_mean(rank_tokens):
    t = rank_tokens.to(torch.float64)
    return float((t.max(dim=1).values / t.mean(dim=1)).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--slots-per-rank", type=int, default=5, help="experts/ranks + redundant slots")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--ffn", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256, help="tokens per step")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--window", type=int, default=4, help="steps per recorded window / re-placement")
    ap.add_argument("--planner", default="omni", help="planner spec string")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write per-step balance records here")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    layers = [MoELayer(args.hidden, args.ffn, args.experts, args.top_k) for _ in range(args.layers)]
    planner = op.Planner(args.planner)
    recorder = op.ActivationRecorder(num_layers=args.layers, num_ids=args.experts)
    ep = ExpertParallelMoE(layers, args.ranks, args.slots_per_rank, recorder)
    static = ep.placement
    # Phase A: a few experts of the first ranks are hot; phase B: others are.
    hot_a = list(range(0, max(2, args.experts // 4)))
    hot_b = list(range(args.experts // 2, args.experts // 2 + max(2, args.experts // 4)))

    print(f"{args.layers} MoE layers, {args.experts} experts, top-{args.top_k}, {args.ranks} ranks x "
          f"{args.slots_per_rank} slots, planner {planner.spec}, {args.tokens} tokens/step")
    print(f"{'step':>4} {'phase':>5} {'max/mean':>9} {'static':>7} {'max |diff|':>11}")
    records, per_phase = [], {}
    worst_diff = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        for step in range(args.steps):
            phase = "A" if step < args.steps // 2 else "B"
            x = workload(layers, hot_a if phase == "A" else hot_b, args.tokens, gen)
            y, rank_tokens = ep.forward(x)
            reference, inputs = dense_forward(layers, x)
            diff = float((y - reference).abs().max())
            worst_diff = max(worst_diff, diff)
            balance = max_over_mean(rank_tokens)
            # What the initial (static) placement would have given on the same routing.
            routed = op.LoadMatrix(torch.stack([torch.bincount(layer.route(xin)[0].ravel(), minlength=args.experts)
                                                for layer, xin in zip(layers, inputs)]))
            static_balance = op.placement_balance(static, routed).mean_max_over_mean
            print(f"{step:>4} {phase:>5} {balance:>9.3f} {static_balance:>7.3f} {diff:>11.2e}")
            records.append({"step": step, "policy": "dynamic (" + planner.spec + ")", "max_over_mean": balance})
            records.append({"step": step, "policy": "static (contiguous)", "max_over_mean": static_balance})
            per_phase.setdefault(phase, []).append((step, balance, static_balance))
            if (step + 1) % args.window == 0 and step + 1 < args.steps:
                window = recorder.take_window()
                window.check()
                plan = planner.plan(window.load, num_ranks=args.ranks, slots_per_rank=args.slots_per_rank,
                                    current=ep.placement)
                before = ep.moved_slots
                ep.install(plan.placement)
                planned = op.placement_balance(plan.placement, window.load).mean_max_over_mean
                print(f"     re-placed after step {step}: {ep.moved_slots - before} slots refilled "
                      f"(planned max/mean on the window {planned:.3f})")
    elapsed = time.perf_counter() - start

    # Balance on each phase's steps after its first window (placement fitted to it) vs. static.
    ok = worst_diff < 1e-4
    for phase in ("A", "B"):
        rows = per_phase.get(phase, [])
        if len(rows) <= args.window:
            continue
        first = sum(r[1] for r in rows[:args.window]) / args.window
        fitted = rows[args.window:]
        after = sum(r[1] for r in fitted) / len(fitted)
        static_mean = sum(r[2] for r in fitted) / len(fitted)
        print(f"phase {phase}: max/mean {first:.3f} before re-placement, {after:.3f} after "
              f"(static placement: {static_mean:.3f})")
        ok = ok and after < static_mean
    print(f"moved {ep.moved_slots} slots, {ep.moved_bytes / 1e6:.2f} MB across ranks; "
          f"max |EP - dense| = {worst_diff:.2e}; {elapsed:.2f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"per_step": records}, f, indent=1)
    print("OK" if ok else "FAILED: outputs differ or re-placement did not beat the static placement")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

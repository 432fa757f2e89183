"""`omniplace eval --json` against an independent numpy computation (C++ twin: tests/tools/cli_io_test.cc).

Run by ctest (label python): python3 cli_eval_numpy_test.py <omniplace> <source dir>.
For shipped placements, patterns, traces and dumps, recomputes per layer the rank loads (every replica
takes an even share of its expert), max/mean, the lower bound (max of W/R and water-filling over all
slots, docs/REFERENCES.md section 6), excess, same-rank duplicates and the nearest-replica dispatch split, and
compares them with eval's JSON output.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

OMNIPLACE, SRC = sys.argv[1], sys.argv[2]
DATA = os.path.join(SRC, "data")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def read_pattern(path):
    """[R, L, E] 0/1 tensor from an omni-infer .npy or .txt pattern, read with numpy/text only."""
    if path.endswith(".npy"):
        return np.load(path)
    with open(path) as f:
        tok = f.read().split()
    r, l, e = (int(t) for t in tok[:3])
    return np.array([int(t) for t in tok[3:]]).reshape(r, l, e)


def pattern_rows(pattern):
    """phy2log rows per layer: slots per rank = max replicas on a rank, ascending experts, -1 padding."""
    R, L, E = pattern.shape
    rows = []
    for l in range(L):
        spr = int(pattern[:, l, :].sum(axis=1).max())
        row = np.full(R * spr, -1)
        for r in range(R):
            ex = np.nonzero(pattern[r, l])[0]
            row[r * spr:r * spr + len(ex)] = ex
        rows.append((spr, row))
    return rows


def expected(rows, load, R, ranks_per_host):
    out = []
    host = np.arange(R) // ranks_per_host
    for l, (spr, row) in enumerate(rows):
        w = np.asarray(load[l], dtype=float)
        E = len(w)
        counts = np.bincount(row[row >= 0], minlength=E)
        ranks = np.zeros(R)
        for g, e in enumerate(row):
            if e >= 0:
                ranks[g // spr] += w[e] / counts[e]
        W = w.sum()
        mean = W / R
        mx = ranks.max()
        c = np.ones(E)
        for _ in range(R * spr - E):  # water-filling over every slot of the layer
            c[int(np.argmax(w / c))] += 1
        bound = max(mean, (w / c).max())
        dups = 0
        for r in range(R):
            on = row[r * spr:(r + 1) * spr]
            on = on[on >= 0]
            dups += len(on) - len(set(on.tolist()))
        same_rank = same_host = cross = 0.0
        for e in range(E):
            if w[e] <= 0:
                continue
            holders = set((np.nonzero(row == e)[0] // spr).tolist())
            hosts = {host[r] for r in holders}
            for r in range(R):
                if r in holders:
                    same_rank += w[e] / R
                elif host[r] in hosts:
                    same_host += w[e] / R
                else:
                    cross += w[e] / R
        out.append(dict(max=mx, mean=mean, max_over_mean=mx / mean, lower_bound=bound, bound_over_mean=bound / mean,
                        excess=(mx - bound) / mean, duplicates=dups, same_rank=same_rank, same_host=same_host,
                        cross=cross, W=W))
    return out


def compare(name, args, rows, load, R, rph):
    r = subprocess.run([OMNIPLACE, "eval", *args, "--ranks-per-host", str(rph), "--json"], capture_output=True, text=True)
    check(r.returncode == 0, "%s: exit %d: %s" % (name, r.returncode, r.stderr))
    if r.returncode != 0:
        return
    got = json.loads(r.stdout)
    want = expected(rows, load, R, rph)
    check(len(got["layers"]) == len(want), "%s: %d layers" % (name, len(got["layers"])))
    for l, (g, w) in enumerate(zip(got["layers"], want)):
        for key in ["max", "mean", "max_over_mean", "lower_bound", "bound_over_mean", "excess"]:
            check(close(g[key], w[key]), "%s layer %d %s: eval %r, numpy %r" % (name, l, key, g[key], w[key]))
        check(g["duplicates"] == w["duplicates"], "%s layer %d duplicates" % (name, l))
        check(g["slots_per_rank"] == rows[l][0], "%s layer %d slots_per_rank" % (name, l))
        for key, wk in [("same_rank_share", "same_rank"), ("same_host_share", "same_host"), ("cross_host_share", "cross")]:
            check(close(g[key], w[wk] / w["W"]), "%s layer %d %s: eval %r, numpy %r" % (name, l, key, g[key], w[wk] / w["W"]))
    s = got["summary"]
    check(close(s["sum_max"], sum(w["max"] for w in want)), "%s sum_max" % name)
    check(close(s["sum_lower_bound"], sum(w["lower_bound"] for w in want)), "%s sum_lower_bound" % name)
    check(close(s["balancedness"], sum(w["mean"] for w in want) / sum(w["max"] for w in want)), "%s balancedness" % name)
    check(close(s["mean_max_over_mean"], np.mean([w["max_over_mean"] for w in want])), "%s mean max/mean" % name)
    check(close(s["cross_host_share"], sum(w["cross"] for w in want) / sum(w["W"] for w in want)), "%s cross" % name)
    print("%s: %d layers compared" % (name, len(want)))


def contiguous_rows(L, R, E, spr):
    row = np.full(R * spr, -1)
    e = 0
    for r in range(R):
        n = E // R + (1 if r < E % R else 0)
        row[r * spr:r * spr + n] = np.arange(e, e + n)
        e += n
    return [(spr, row)] * L


# 1. Qwen trace windows with the shipped contiguous placement (12 ranks x 6 slots, 4 ranks per host).
qwen = os.path.join(DATA, "traces", "qwen15moe_expert_freq_by_iteration.csv")
with open(qwen) as f:
    lines = [ln.strip().split(",") for ln in f][1:]
for ds, it in [("bookcorpus", 0), ("wikitext", 7), ("wmt19", 19)]:
    load = np.zeros((12, 60))
    for ln in lines:
        if ln[1] == ds and int(ln[2]) == it:
            load[int(ln[3])] = [float(v) for v in ln[4:]]
    compare("qwen %s#%d" % (ds, it),
            ["--placement", os.path.join(DATA, "placements", "qwen15moe_contiguous_12ranks_6slots.json"),
             "--load", qwen, "--select", "dataset=%s,iteration=%d" % (ds, it)],
            contiguous_rows(12, 12, 60, 6), load, 12, 4)

# 2. A shipped 4-rank pattern with replicas and its shipped activation dump (per-slot counts).
pat_path = os.path.join(DATA, "patterns", "placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt")
rows = pattern_rows(read_pattern(pat_path))
dump = os.path.join(DATA, "dumps", "sc_64eps_4devices_step0.txt")
load = np.zeros((58, 64))
with open(dump) as f:
    for l, ln in enumerate(f):
        spr, row = rows[l]
        for g, c in enumerate(ln.split("\t")):
            if row[g] >= 0:
                load[l, row[g]] += int(c)
compare("sc_64eps dump", ["--placement", pat_path, "--load", dump], rows, load, 4, 2)

# 3. The layer-wise uneven GSM8K decode pattern (32 ranks) under a random float load saved by numpy.
gsm = os.path.join(DATA, "patterns", "DSV3_0427_GSM8K_decode_RedFullLays_+10_58_MoELayers_32_dies_epmaxdeploy_12.npy")
rng = np.random.default_rng(3)
weights = rng.lognormal(0.0, 1.0, size=(58, 256)) * 100
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "load.npy")
    np.save(path, weights)
    compare("gsm8k random weights", ["--placement", gsm, "--load", path], pattern_rows(read_pattern(gsm)), weights, 32, 8)

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)

"""Generates the sample activation dumps of this folder (run: /usr/bin/python3 make_samples.py).

For a shipped omni-infer pattern, simulates top-k routing of a batch of tokens per MoE
layer (expert popularity drawn from a seeded Zipf-like law), sends each routed token to
one replica of its expert chosen uniformly at random (what omni-infer's dispatch does),
and counts tokens per global slot (rank-major, slots on a rank in ascending expert id,
as data/patterns/README.md describes). Writes:
  <name>.txt            the dump: one line per layer, tab-separated per-slot counts
  <name>.expected.csv   per-expert token counts [layers, experts], computed from the
                        routing itself (before splitting over replicas), for tests
Deterministic: the same seed gives the same files.
"""
import numpy as np


def read_text_pattern(path):
    with open(path) as f:
        tokens = f.read().split()
    r, l, e = (int(t) for t in tokens[:3])
    return np.array([int(t) for t in tokens[3:]], dtype=np.int64).reshape(r, l, e)


def make(pattern_path, name, tokens, top_k, seed):
    rng = np.random.default_rng(seed)
    pattern = read_text_pattern(pattern_path)
    num_ranks, num_layers, num_experts = pattern.shape
    lines, expected = [], []
    for layer in range(num_layers):
        spr = int(pattern[:, layer, :].sum(axis=1).max())
        slot_expert = np.full(num_ranks * spr, -1)
        for r in range(num_ranks):
            experts = np.nonzero(pattern[r, layer])[0]
            slot_expert[r * spr:r * spr + len(experts)] = experts
        popularity = 1.0 / np.arange(1, num_experts + 1) ** 1.1
        popularity = rng.permutation(popularity / popularity.sum())
        expert_counts = np.zeros(num_experts, dtype=np.int64)
        slot_counts = np.zeros(num_ranks * spr, dtype=np.int64)
        for _ in range(tokens):
            for e in rng.choice(num_experts, size=top_k, replace=False, p=popularity):
                expert_counts[e] += 1
                replicas = np.nonzero(slot_expert == e)[0]
                slot_counts[rng.choice(replicas)] += 1
        lines.append("\t".join(str(c) for c in slot_counts))
        expected.append(",".join(str(c) for c in expert_counts))
    with open(name + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(name + ".expected.csv", "w") as f:
        f.write("# per-expert token counts [%d layers, %d experts] of %s.txt, from make_samples.py\n"
                % (num_layers, num_experts, name))
        f.write("\n".join(expected) + "\n")


make("../patterns/placement_pattern_test_for_optimizer.txt", "test_for_optimizer_step0", tokens=512, top_k=2, seed=1)
make("../patterns/placement_pattern_3d_v3_indevrrori0322_58moe_4devices_SC_64eps.txt", "sc_64eps_4devices_step0",
     tokens=256, top_k=8, seed=2)

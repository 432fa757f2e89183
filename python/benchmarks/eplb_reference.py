"""A re-implementation, in plain PyTorch, of DeepSeek's EPLB algorithm (the default
policy vLLM and SGLang ship), written from its description in docs/REFERENCES.md section 1
for benchmarking only. It is NOT OmniPlacement's code and not DeepSeek's or vLLM's
code: it follows the same steps in the same way (Python loop over layers and items in
balanced_packing, one torch max per redundant slot in replicate_experts), so that its
cost is that of the reference algorithm. `python3 eplb_reference.py` checks it against
the reference outputs listed in docs/REFERENCES.md before anyone trusts a timing of it.

    phy2log, log2phy, logcnt = rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
"""
import torch


def balanced_packing(weight, num_packs):
    """weight [X, n] -> (pack [X, n], rank_in_pack [X, n]): items in descending weight
    (stable), each to the lightest pack that still has room (first on ties); every pack
    gets exactly n / num_packs items."""
    rows, n = weight.shape
    per_pack = n // num_packs
    assert n % num_packs == 0
    if per_pack == 1:
        return torch.arange(n).expand(rows, n).clone(), torch.zeros(rows, n, dtype=torch.int64)
    order = torch.sort(weight, dim=-1, descending=True, stable=True).indices
    pack = torch.full((rows, n), -1, dtype=torch.int64)
    rank = torch.full((rows, n), -1, dtype=torch.int64)
    w = weight.tolist()
    for i in range(rows):
        loads, counts = [0.0] * num_packs, [0] * num_packs
        for item in order[i].tolist():
            best = min((p for p in range(num_packs) if counts[p] < per_pack), key=loads.__getitem__)
            pack[i, item], rank[i, item] = best, counts[best]
            loads[best] += w[i][item]
            counts[best] += 1
    return pack, rank


def replicate_experts(weight, num_phy):
    """weight [X, num_log] -> (phy2log [X, num_phy], replica rank [X, num_phy], logcnt
    [X, num_log]): each extra slot to the expert with the largest weight / count."""
    rows, num_log = weight.shape
    phy2log = torch.arange(num_phy).remainder(num_log).expand(rows, num_phy).clone()
    rank = torch.zeros(rows, num_phy, dtype=torch.int64)
    logcnt = torch.ones(rows, num_log, dtype=torch.int64)
    all_rows = torch.arange(rows)
    for slot in range(num_log, num_phy):
        best = (weight / logcnt).max(dim=-1).indices
        phy2log[:, slot] = best
        rank[:, slot] = logcnt[all_rows, best]
        logcnt[all_rows, best] += 1
    return phy2log, rank, logcnt


def _hierarchical(weight, num_phy, num_groups, num_nodes, num_gpus):
    layers, num_log = weight.shape
    group_size = num_log // num_groups
    groups_per_node = num_groups // num_nodes
    log_per_node = num_log // num_nodes
    phy_per_node = num_phy // num_nodes
    phy_per_gpu = num_phy // num_gpus
    # (1) expert groups onto nodes.
    group_pack, group_rank = balanced_packing(weight.view(layers, num_groups, group_size).sum(-1), num_nodes)
    # The node-major order of logical experts: node, group's rank in the node, expert in group.
    node_pos = (group_pack * groups_per_node + group_rank) * group_size          # [L, groups]
    log_to_nodepos = (node_pos.unsqueeze(-1) + torch.arange(group_size)).flatten(1)  # [L, E]
    nodepos_to_log = torch.empty_like(log_to_nodepos).scatter_(
        1, log_to_nodepos, torch.arange(num_log).expand(layers, num_log))
    # (2) replicas within each node.
    node_weight = weight.gather(1, nodepos_to_log).view(layers * num_nodes, log_per_node)
    phy_to_local, phy_rank, local_cnt = replicate_experts(node_weight, phy_per_node)
    # (3) each node's slots (load / count) onto its GPUs.
    slot_load = (node_weight / local_cnt).gather(1, phy_to_local)
    gpu_pack, gpu_rank = balanced_packing(slot_load, num_gpus // num_nodes)
    position = gpu_pack * phy_per_gpu + gpu_rank                                 # slot's place in the node
    order = torch.empty_like(position).scatter_(1, position, torch.arange(phy_per_node).expand_as(position))
    placed_local = phy_to_local.gather(1, order).view(layers, num_nodes, phy_per_node)
    placed_local = placed_local + (torch.arange(num_nodes) * log_per_node).view(1, -1, 1)
    phy2log = nodepos_to_log.gather(1, placed_local.flatten(1))
    replica = phy_rank.gather(1, order).view(layers, num_phy)
    logcnt = local_cnt.view(layers, num_log).gather(1, log_to_nodepos)
    return phy2log, replica, logcnt


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """DeepSeek EPLB: hierarchical when num_groups % num_nodes == 0, else global."""
    layers, num_log = weight.shape
    weight = weight.float().cpu()
    if num_groups % num_nodes == 0:
        phy2log, replica, logcnt = _hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, replica, logcnt = _hierarchical(weight, num_replicas, 1, 1, num_gpus)
    width = int(logcnt.max())
    log2phy = torch.full((layers, num_log, width), -1, dtype=torch.int64)
    log2phy.view(layers, -1).scatter_(1, phy2log * width + replica, torch.arange(num_replicas).expand(layers, -1))
    return phy2log, log2phy, logcnt


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_planner import FIRST_CASE_LOG2PHY, GOLDEN  # docs/REFERENCES.md section 1

    for weight, args, phy2log, logcnt in GOLDEN:
        out = rebalance_experts(torch.tensor(weight, dtype=torch.float32), *args)
        assert out[0].tolist() == phy2log and out[2].tolist() == logcnt, (args, out[0].tolist())
    first = rebalance_experts(torch.tensor(GOLDEN[0][0], dtype=torch.float32), *GOLDEN[0][1])
    assert first[1].tolist() == FIRST_CASE_LOG2PHY
    print(f"eplb_reference: the {len(GOLDEN)} reference cases of docs/REFERENCES.md section 1 reproduced")

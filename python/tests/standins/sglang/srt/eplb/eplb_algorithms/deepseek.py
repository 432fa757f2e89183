"""Placeholder for SGLang's copy of DeepSeek's EPLB (not its algorithm): replicas of
experts by id, round robin; the same keywords and outputs."""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, enable_hierarchical):
    num_layers, num_logical = weight.shape
    phy2log = (torch.arange(num_replicas, dtype=torch.int64) % num_logical).expand(num_layers, -1).clone()
    logcnt = torch.stack([torch.bincount(row, minlength=num_logical) for row in phy2log])
    width = int(logcnt.max())
    log2phy = torch.full((num_layers, num_logical, width), -1, dtype=torch.int64)
    for l in range(num_layers):
        seen = [0] * num_logical
        for p, e in enumerate(phy2log[l].tolist()):
            log2phy[l, e, seen[e]] = p
            seen[e] += 1
    return phy2log, log2phy, logcnt

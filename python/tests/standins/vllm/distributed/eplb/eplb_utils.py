import torch


def compute_logical_maps(phy2log: torch.Tensor, num_logical_experts: int):
    """(log2phy [L, E, max replicas] by ascending slot, -1 padded; logcnt [L, E]) from phy2log [L, P]."""
    num_layers, _ = phy2log.shape
    logcnt = torch.zeros(num_layers, num_logical_experts, dtype=torch.int64)
    slots = [[[] for _ in range(num_logical_experts)] for _ in range(num_layers)]
    for l in range(num_layers):
        for p, e in enumerate(phy2log[l].tolist()):
            if e >= 0:
                slots[l][e].append(p)
                logcnt[l, e] += 1
    width = max(1, int(logcnt.max()))
    log2phy = torch.full((num_layers, num_logical_experts, width), -1, dtype=torch.int64)
    for l in range(num_layers):
        for e in range(num_logical_experts):
            log2phy[l, e, :len(slots[l][e])] = torch.tensor(slots[l][e], dtype=torch.int64)
    return log2phy, logcnt

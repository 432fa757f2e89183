"""The expert-distribution recorder's dumps (--expert-distribution-recorder-mode).

Counts arrive per forward pass and layer as physical expert ids (the router's top-k ids
after the logical-to-physical dispatch, -1 for padding). dump() writes what SGLang writes:
  stat      rank 0 only, expert_distribution_recorder_{time}.pt:
            {"rank", "logical_count": int32 [steps, layers, logical] summed over ranks,
             "average_utilization_rate_over_window": None or float}
  per_pass  every rank, expert_distribution_recorder_{time}_{rank}.pt:
            {"records": [{"forward_pass_id", "rank", "gatherer_key",
                          "global_physical_count": int32 [layers, physical]}, ...],
             "last_physical_to_logical_map": [layers, physical]}
  per_token the same records with "topk_ids_of_layer": int32 [layers, tokens, top_k]
            (and the batch's input_ids, positions, ...) instead of global_physical_count.
This stand-in records one rank's view; stat sums the ranks' recorders it is given.
"""
import time
from pathlib import Path

import torch


class Recorder:
    def __init__(self, mode, physical_to_logical_map, num_logical_experts, rank=0):
        self.mode, self.p2l, self.num_logical, self.rank = mode, physical_to_logical_map, num_logical_experts, rank
        self.num_layers, self.num_physical = physical_to_logical_map.shape
        self.passes = []  # (forward_pass_id, global_physical_count [L, P], topk ids per layer)

    def on_forward_pass(self, forward_pass_id, topk_ids_of_layer):
        """topk_ids_of_layer: int [layers, tokens, top_k] physical ids (-1: none)."""
        count = torch.zeros(self.num_layers, self.num_physical, dtype=torch.int32)
        for l in range(self.num_layers):
            ids = topk_ids_of_layer[l].flatten()
            mask = ids != -1
            count[l].scatter_add_(0, ids.masked_fill(~mask, 0).long(), mask.int())
        self.passes.append((forward_pass_id, count, topk_ids_of_layer.to(torch.int32)))

    def _logical_count(self):
        physical = torch.stack([c for _, c, _ in self.passes])
        logical = torch.zeros(physical.shape[0], self.num_layers, self.num_logical, dtype=physical.dtype)
        logical.scatter_add_(2, self.p2l.unsqueeze(0).expand(physical.shape[0], -1, -1).long(), physical)
        return logical

    def dump(self, directory, others=()):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.mode == "stat":
            logical = self._logical_count()
            for other in others:
                logical += other._logical_count()
            path = directory / f"expert_distribution_recorder_{time.time()}.pt"
            torch.save({"rank": self.rank, "logical_count": logical, "average_utilization_rate_over_window": None},
                       str(path))
            return path
        records = []
        for fid, count, ids in self.passes:
            rec = {"forward_pass_id": fid, "rank": self.rank, "gatherer_key": "primary"}
            if self.mode == "per_pass":
                rec["global_physical_count"] = count
            else:
                rec.update(input_ids=[0] * ids.shape[1], positions=list(range(ids.shape[1])), extend_seq_lens=None,
                           forward_mode=2, topk_ids_of_layer=ids, misc_objects=[])
            records.append(rec)
        path = directory / f"expert_distribution_recorder_{time.time()}_{self.rank}.pt"
        torch.save({"records": records, "last_physical_to_logical_map": self.p2l}, str(path))
        return path

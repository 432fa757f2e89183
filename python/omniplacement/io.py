"""File formats (bindings of the library's io module).

    import omniplacement.io as oio
    placement, topology = oio.read_placement_file("data/patterns/DSV3_baseline_8_devices_58_MoE_Layers.npy")
    load = oio.read_load_file("data/traces/qwen15moe_expert_freq_by_iteration.csv",
                              "dataset=wikitext,iteration=3")                   # 12 x 60 counts
    trace = oio.Trace.read_csv("data/traces/qwen15moe_expert_freq_by_iteration.csv")
    series = trace.series(["bookcorpus", "wikitext", "wmt19"])                # list of TraceWindow
    config = oio.read_config("omniplacement.yaml")

Errors raise ValueError (bad or missing file content, NOT_FOUND for a missing file)
or RuntimeError, with the library's message naming the file, line and field.
Plain .npy arrays need no binding: numpy.load / numpy.save handle them.
"""
from . import _omni

if not hasattr(_omni, "io"):
    raise ImportError("omniplacement was built without the io module (see omniplacement.bound_modules)")

__all__ = [name for name in dir(_omni.io) if not name.startswith("_")]
globals().update({name: getattr(_omni.io, name) for name in __all__})

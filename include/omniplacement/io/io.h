// Umbrella header for omniplacement::io: .npy arrays, placement files (ours and
// omni-infer's patterns), loads and traces, activation dumps, YAML config,
// safetensors checkpoints.
// Every format is described, with an example, in docs/formats.md.
//
//   auto plan = omni::read_placement_file("plan.json");                 // or a .npy/.txt/.bin pattern
//   auto load = omni::read_load_file("trace.csv", "dataset=wmt19,iteration=0");
//
// Thread safety: every function is pure (or reads/writes only the files it names).
#pragma once

#include "omniplacement/io/activation_dump.h"
#include "omniplacement/io/config.h"
#include "omniplacement/io/file_kind.h"
#include "omniplacement/io/load_file.h"
#include "omniplacement/io/npy.h"
#include "omniplacement/io/pattern.h"
#include "omniplacement/io/placement_file.h"
#include "omniplacement/io/safetensors.h"
#include "omniplacement/io/trace.h"

// Umbrella header for omniplacement::core: ids, Status, Topology, Placement,
// LoadMatrix, ExpertMap, validation and metrics. No I/O, no threads.
#pragma once

#include "omniplacement/core/coverage.h"
#include "omniplacement/core/expert_map.h"
#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"
#include "omniplacement/core/metrics.h"
#include "omniplacement/core/placement.h"
#include "omniplacement/core/status.h"
#include "omniplacement/core/str_cat.h"
#include "omniplacement/core/topology.h"
#include "omniplacement/core/validation.h"
#include "omniplacement/core/version.h"

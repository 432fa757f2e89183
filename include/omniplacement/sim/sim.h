// Umbrella header for omniplacement::sim: cost model, synthetic workloads,
// trace sources and the side-by-side simulator.
#pragma once

#include "omniplacement/sim/cost_model.h"
#include "omniplacement/sim/report.h"
#include "omniplacement/sim/simulator.h"
#include "omniplacement/sim/trace.h"
#include "omniplacement/sim/workload.h"

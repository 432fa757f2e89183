// omniplace_plan_eval: the planner evaluation harness (bench/plan_eval/README.md).
//
//   omniplace_plan_eval checksums
//       plan checksums over several specs and workloads (behaviour-neutral checks)
//   omniplace_plan_eval eval --workloads demo,qwen,dsv3,held-out
//       --policies 'scratch:eplb;inc:omni;oracle:eplb' [--dispatch shares,per-batch] [--history 6] [--json FILE]
//       re-plans after every window and measures each plan on the next window
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "plan_eval/checksums.h"
#include "plan_eval/evaluate.h"
#include "plan_eval/workloads.h"

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: omniplace_plan_eval checksums\n"
               "       omniplace_plan_eval eval --workloads W[,W...] --policies 'MODE:SPEC[;MODE:SPEC...]'\n"
               "                               [--dispatch shares,per-batch] [--history N] [--json FILE]\n"
               "                               [--expert-bytes B] [--seconds-per-token S] [--interval-windows N] [--start SPEC]\n"
               "workloads: demo qwen dsv3 held-out (or one held-out workload's name); modes: scratch inc oracle\n");
  return 2;
}

int run_eval(int argc, char** argv) {
  omni::plan_eval::EvalOptions opt;
  std::vector<std::string> workloads;
  std::string json;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (a == "--workloads") {
      workloads = split(v, ',');
    } else if (a == "--policies") {
      opt.policies = split(v, ';');
    } else if (a == "--dispatch") {
      opt.dispatch.clear();
      for (const std::string& d : split(v, ',')) {
        if (d == "shares") opt.dispatch.push_back(omni::plan_eval::Dispatch::kShares);
        else if (d == "per-batch") opt.dispatch.push_back(omni::plan_eval::Dispatch::kPerBatch);
        else return usage();
      }
    } else if (a == "--history") {
      opt.history = std::stoi(v);
    } else if (a == "--expert-bytes") {
      opt.expert_bytes = std::stod(v);
    } else if (a == "--seconds-per-token") {
      opt.seconds_per_token = std::stod(v);
    } else if (a == "--interval-windows") {
      opt.interval_windows = std::stod(v);
    } else if (a == "--start") {
      opt.start = v;
    } else if (a == "--json") {
      json = v;
    } else {
      return usage();
    }
  }
  if (workloads.empty() || opt.policies.empty() || opt.history < 1) return usage();
  std::ofstream json_out;
  if (!json.empty()) json_out.open(json);
  for (const std::string& name : workloads) {
    auto ws = omni::plan_eval::workloads_named(name);
    if (!ws.ok()) {
      std::cerr << ws.status() << "\n";
      return 1;
    }
    for (const auto& w : *ws) {
      auto figures = omni::plan_eval::evaluate(w, opt);
      if (!figures.ok()) {
        std::cerr << w.name << ": " << figures.status() << "\n";
        return 1;
      }
      std::cout << omni::plan_eval::figures_table(w, *figures) << std::flush;
      if (json_out) json_out << omni::plan_eval::figures_json(w, *figures) << std::flush;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "checksums") == 0) return omni::plan_eval::run_checksums();
  if (argc >= 2 && std::strcmp(argv[1], "eval") == 0) return run_eval(argc, argv);
  return usage();
}

#include "omniplacement/sim/report.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "omniplacement/core/str_cat.h"

namespace omni::sim {

namespace {

// A CSV field, quoted when it holds a comma, a quote or a line break (policy
// names such as "dynamic:omni(max_moves_per_rank=1,max_replicas_per_expert=4)" do).
std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string summary_table(const SimResult& r) {
  std::ostringstream os;
  os << r.num_steps << " steps, " << r.num_layers << " layers x " << r.num_experts << " experts, " << r.num_ranks
     << " ranks (simulated in " << std::fixed << std::setprecision(1) << r.wall_s << " s)\n";
  size_t width = 6;
  for (const PolicySummary& p : r.policies) width = std::max(width, p.name.size());
  os << std::left << std::setw(static_cast<int>(width)) << "policy" << std::right << std::setw(9) << "kind"
     << std::setw(12) << "mean ms" << std::setw(12) << "p99 ms" << std::setw(10) << "max/mean" << std::setw(11)
     << "after 1st" << std::setw(15) << "cross-host GB" << std::setw(11) << "moved GB" << std::setw(14)
     << "moved experts" << std::setw(13) << "migration s" << std::setw(7) << "plans"
     << std::setw(10) << "plan s" << "\n";
  for (const PolicySummary& p : r.policies) {
    os << std::left << std::setw(static_cast<int>(width)) << p.name << std::right << std::setw(9) << p.kind
       << std::fixed << std::setprecision(4) << std::setw(12) << p.mean_step_s * 1e3 << std::setw(12)
       << p.p99_step_s * 1e3 << std::setprecision(3) << std::setw(10) << p.mean_max_over_mean << std::setw(11)
       << p.mean_max_over_mean_after_first;
    if (p.kind == "bound") {
      os << std::setw(15) << "-" << std::setw(11) << "-" << std::setw(14) << "-" << std::setw(13) << "-" << std::setw(7) << "-"
         << std::setw(10) << "-" << "\n";
      continue;
    }
    os << std::setprecision(2) << std::setw(15) << p.cross_host_bytes / 1e9 << std::setw(11) << p.moved_bytes / 1e9
       << std::setw(14) << p.moved_experts << std::setprecision(3) << std::setw(13) << p.migration_s << std::setw(7) << p.replans << std::setw(10)
       << p.plan_wall_s << "\n";
  }
  return os.str();
}

Status write_steps_csv(const SimResult& r, const std::string& path) {
  if (r.steps.empty() && r.num_steps > 0) {
    return failed_precondition_error(str_cat("sim report: ", path, ": the result has no per-step records "
                                             "(SimOptions::record_steps was off)"));
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return not_found_error(str_cat("sim report: cannot open ", path, " for writing: ", std::strerror(errno)));
  out << "step,policy,kind,time_s,compute_s,comm_s,migration_s,max_over_mean,cross_host_bytes,moved_bytes,moved_experts\n";
  char buf[512];
  for (const StepRecord& s : r.steps) {
    if (s.policy < 0 || static_cast<size_t>(s.policy) >= r.policies.size()) {
      return internal_error(str_cat("sim report: step ", s.step, " names policy ", s.policy));
    }
    const PolicySummary& p = r.policies[static_cast<size_t>(s.policy)];
    std::snprintf(buf, sizeof buf, ",%.9g,%.9g,%.9g,%.9g,%.6g,%.9g,%.9g,%lld\n", s.time_s, s.compute_s, s.comm_s,
                  s.migration_s, s.max_over_mean, s.cross_host_bytes, s.moved_bytes,
                  static_cast<long long>(s.moved_experts));
    out << s.step << ',' << csv_field(p.name) << ',' << p.kind << buf;
  }
  out.flush();
  if (!out) return internal_error(str_cat("sim report: writing ", path, " failed: ", std::strerror(errno)));
  return ok_status();
}

}  // namespace omni::sim

// RankThreads: one long-lived thread per rank of a LocalCluster (its engine
// thread). run(fn) hands every thread the task fn(r) and waits for all of
// them. Internal to the runtime (not installed).
//
// Threads: run() from any thread, one run at a time (the caller serialises);
// the destructor joins the threads and must not race a run().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/status.h"

namespace omni::runtime_internal {

class RankThreads {
 public:
  explicit RankThreads(int32_t num_ranks);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  // fn(r) on thread r for every rank; the statuses indexed by rank (an
  // exception escaping fn is that rank's INTERNAL status).
  std::vector<Status> run(const std::function<Status(RankId)>& fn);

 private:
  void loop(RankId r);

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<Status(RankId)>* task_ = nullptr;  // guarded by mu_
  std::vector<Status> results_;                          // guarded by mu_
  int32_t pending_ = 0;                                  // guarded by mu_
  uint64_t generation_ = 0;                              // guarded by mu_
  bool stop_ = false;                                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace omni::runtime_internal

#include "rank_threads.h"

#include <exception>

#include "omniplacement/core/str_cat.h"

namespace omni::runtime_internal {

RankThreads::RankThreads(int32_t num_ranks) {
  threads_.reserve(static_cast<size_t>(num_ranks));
  for (RankId r = 0; r < num_ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::vector<Status> RankThreads::run(const std::function<Status(RankId)>& fn) {
  std::unique_lock<std::mutex> lock(mu_);
  task_ = &fn;
  results_.assign(threads_.size(), Status());
  pending_ = static_cast<int32_t>(threads_.size());
  ++generation_;
  cv_.notify_all();
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  task_ = nullptr;
  return results_;
}

void RankThreads::loop(RankId r) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<Status(RankId)>* task = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      task = task_;
    }
    Status s;
    try {
      s = (*task)(r);
    } catch (const std::exception& e) {
      s = internal_error(str_cat("threw: ", e.what()));
    } catch (...) {
      s = internal_error("threw a non-standard exception");
    }
    std::lock_guard<std::mutex> lock(mu_);
    results_[static_cast<size_t>(r)] = std::move(s);
    if (--pending_ == 0) done_cv_.notify_all();
  }
}

}  // namespace omni::runtime_internal

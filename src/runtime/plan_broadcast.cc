#include "omniplacement/runtime/plan_broadcast.h"

#include <array>
#include <cstring>
#include <string>

#include "omniplacement/core/placement_ops.h"
#include "omniplacement/core/str_cat.h"

namespace omni {

namespace {

constexpr int64_t kKindPlan = 1;
constexpr int64_t kKindError = 2;

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// Reads values from the front of a byte span; false once it runs short.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}
  template <typename T>
  bool get(T& v) {
    if (bytes_.size() - at_ < sizeof(T)) return false;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  bool done() const { return at_ == bytes_.size(); }
  size_t left() const { return bytes_.size() - at_; }

 private:
  std::span<const std::byte> bytes_;
  size_t at_ = 0;
};

Status malformed(const std::string& what) { return data_loss_error("decode_plan: " + what); }

}  // namespace

std::vector<std::byte> encode_plan(const Placement& p) {
  std::vector<std::byte> out;
  put<int64_t>(out, p.num_layers());
  put<int64_t>(out, p.num_ranks());
  put<int64_t>(out, p.num_experts());
  put<int64_t>(out, p.has_shares() ? 1 : 0);
  for (LayerId l = 0; l < p.num_layers(); ++l) put<int32_t>(out, p.slots_per_rank(l));
  for (LayerId l = 0; l < p.num_layers(); ++l)
    for (ExpertId e : p.phy2log(l)) put<int32_t>(out, e);
  if (p.has_shares())
    for (LayerId l = 0; l < p.num_layers(); ++l)
      for (double s : p.shares(l)) put<double>(out, s);
  return out;
}

StatusOr<Placement> decode_plan(std::span<const std::byte> bytes, uint64_t checksum) {
  Reader in(bytes);
  int64_t layers = 0, ranks = 0, experts = 0, shares = 0;
  if (!in.get(layers) || !in.get(ranks) || !in.get(experts) || !in.get(shares))
    return malformed(str_cat(bytes.size(), " bytes are too few for the header"));
  if (layers < 1 || layers > kMaxLayers || ranks < 1 || ranks > kMaxRanks || experts < 1 || experts > kMaxExperts ||
      (shares != 0 && shares != 1))
    return malformed(str_cat("header says ", layers, " layers, ", ranks, " ranks, ", experts, " experts, shares ",
                             shares));
  PlacementLayout layout;
  layout.num_ranks = static_cast<int32_t>(ranks);
  layout.num_experts = static_cast<int32_t>(experts);
  layout.slots_per_rank.resize(static_cast<size_t>(layers));
  for (auto& spr : layout.slots_per_rank) {
    if (!in.get(spr)) return malformed("truncated in slots_per_rank");
    if (spr < 1 || spr > kMaxSlotsPerRank) return malformed(str_cat("slots_per_rank ", spr, " out of range"));
  }
  for (int32_t spr : layout.slots_per_rank) {
    const size_t slots = static_cast<size_t>(ranks) * static_cast<size_t>(spr);
    if (in.left() < slots * sizeof(int32_t))  // before allocating what malformed sizes could ask for
      return malformed(str_cat("truncated in layer ", layout.phy2log.size(), "'s slots"));
    auto& row = layout.phy2log.emplace_back(slots);
    for (auto& e : row)
      if (!in.get(e)) return malformed(str_cat("truncated in layer ", layout.phy2log.size() - 1, "'s slots"));
  }
  if (shares)
    for (const auto& row : layout.phy2log) {
      auto& sh = layout.shares.emplace_back(row.size());
      for (auto& v : sh)
        if (!in.get(v)) return malformed(str_cat("truncated in layer ", layout.shares.size() - 1, "'s shares"));
    }
  if (!in.done()) return malformed(str_cat(bytes.size(), " bytes hold more than one placement"));
  auto p = Placement::create(std::move(layout), lost_experts_allowed());
  if (!p.ok()) return malformed(p.status().to_string());
  if (p->checksum() != checksum)
    return data_loss_error(str_cat("decode_plan: the plan's checksum is ", p->checksum(), ", the leader sent ",
                                   checksum, " (corrupted in transit)"));
  return p;
}

StatusOr<Placement> share_plan(Transport& transport, RankId leader, const StatusOr<Placement>* leader_plan,
                               Timeout timeout) {
  const bool lead = transport.rank() == leader;
  std::array<int64_t, 3> header{};
  std::vector<std::byte> payload;
  if (lead) {
    if (leader_plan != nullptr && leader_plan->ok()) {
      payload = encode_plan(**leader_plan);
      header = {kKindPlan, static_cast<int64_t>(payload.size()), static_cast<int64_t>((*leader_plan)->checksum())};
    } else {
      const std::string why = leader_plan == nullptr ? "no plan" : leader_plan->status().to_string();
      payload.resize(why.size());
      std::memcpy(payload.data(), why.data(), why.size());
      header = {kKindError, static_cast<int64_t>(payload.size()), 0};
    }
  }
  OMNI_RETURN_IF_ERROR(transport.broadcast(std::as_writable_bytes(std::span<int64_t>(header)), leader, timeout)
                           .with_context(str_cat("share_plan: rank ", transport.rank(), ": header from leader ",
                                                 leader)));
  if ((header[0] != kKindPlan && header[0] != kKindError) || header[1] < 0 || header[1] > (int64_t{1} << 40))
    return data_loss_error(str_cat("share_plan: rank ", transport.rank(), ": bad header from leader ", leader,
                                   " (kind ", header[0], ", ", header[1], " bytes)"));
  payload.resize(static_cast<size_t>(header[1]));
  OMNI_RETURN_IF_ERROR(transport.broadcast(payload, leader, timeout)
                           .with_context(str_cat("share_plan: rank ", transport.rank(), ": plan from leader ",
                                                 leader)));
  if (header[0] == kKindError)
    return failed_precondition_error(str_cat("the leader, rank ", leader, ", could not plan: ",
                                             std::string(reinterpret_cast<const char*>(payload.data()),
                                                         payload.size())));
  if (lead) return **leader_plan;
  auto plan = decode_plan(payload, static_cast<uint64_t>(header[2]));
  if (!plan.ok()) return plan.status().with_context(str_cat("rank ", transport.rank(), ", plan of leader ", leader));
  return plan;
}

}  // namespace omni

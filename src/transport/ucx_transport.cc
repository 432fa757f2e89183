#include "omniplacement/transport/ucx_transport.h"

#include "omniplacement/core/str_cat.h"

#if OMNI_HAVE_UCX && OMNI_HAVE_MPI

#include <mpi.h>

#include <mutex>

#include "channel_transport.h"
#include "message_engine.h"
#include "ucx_wire.h"

namespace omni {

using transport_internal::ChannelTransport;
using transport_internal::MessageEngine;

namespace {

std::mutex g_mu;
std::shared_ptr<MessageEngine>* g_engine = nullptr;  // guarded by g_mu; leaked on purpose if never finalised
uint64_t g_worlds = 0;                               // guarded by g_mu

// The channel of init()'s connection check: no world transport uses it.
constexpr uint64_t kBootstrapChannel = ~uint64_t{0};

Status mpi_call(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return ok_status();
  return internal_error(str_cat("UcxTransport::init: ", what, " failed (MPI error ", rc, ")"));
}

// Every process's UCX worker address, by rank, exchanged over MPI_COMM_WORLD.
StatusOr<std::vector<std::vector<std::byte>>> exchange_addresses(const std::vector<std::byte>& mine, int size) {
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<size_t>(size));
  OMNI_RETURN_IF_ERROR(mpi_call(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD),
                                "MPI_Allgather(address lengths)"));
  std::vector<int> offsets(static_cast<size_t>(size));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::vector<std::byte> all(static_cast<size_t>(total));
  OMNI_RETURN_IF_ERROR(mpi_call(MPI_Allgatherv(mine.data(), length, MPI_BYTE, all.data(), lengths.data(),
                                               offsets.data(), MPI_BYTE, MPI_COMM_WORLD),
                                "MPI_Allgatherv(addresses)"));
  std::vector<std::vector<std::byte>> out(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    const auto at = all.begin() + offsets[static_cast<size_t>(r)];
    out[static_cast<size_t>(r)].assign(at, at + lengths[static_cast<size_t>(r)]);
  }
  return out;
}

}  // namespace

bool UcxTransport::available() { return true; }

Status UcxTransport::init(int* argc, char*** argv, Timeout timeout) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_engine != nullptr) return ok_status();
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (finalised) return failed_precondition_error("UcxTransport::init: MPI was already finalized; init() needs it once");
  bool we_initialised = false;
  if (!initialised) {
    int provided = 0;
    OMNI_RETURN_IF_ERROR(mpi_call(MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided), "MPI_Init_thread"));
    we_initialised = true;
  }
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Status status = size > kMaxRanks ? invalid_argument_error(str_cat("UcxTransport::init: ", size,
                                                                    " processes, at most ", kMaxRanks))
                                   : ok_status();
  std::shared_ptr<MessageEngine> engine;
  if (status.ok()) {
    // Every step runs on every process even after a local failure, so that
    // the collective MPI calls below stay matched.
    StatusOr<std::unique_ptr<transport_internal::UcxWorker>> worker = transport_internal::make_ucx_worker();
    std::vector<std::byte> address = worker.ok() ? (*worker)->address() : std::vector<std::byte>();
    StatusOr<std::vector<std::vector<std::byte>>> addresses = exchange_addresses(address, size);
    if (!worker.ok()) {
      status = worker.status();
    } else if (!addresses.ok()) {
      status = addresses.status();
    } else {
      StatusOr<std::unique_ptr<transport_internal::Wire>> wire =
          transport_internal::UcxWorker::connect(std::move(*worker), rank, *addresses);
      if (wire.ok()) {
        engine = MessageEngine::start(std::move(*wire));
        // Every connection works before MPI goes away.
        auto check = ChannelTransport::open(engine, kBootstrapChannel,
                                            std::vector<char>(static_cast<size_t>(size), 0));
        status = check.ok() ? (*check)->barrier(timeout).with_context("UcxTransport::init: connection check")
                            : check.status();
      } else {
        status = wire.status();
      }
    }
  }
  int ok = status.ok() ? 1 : 0, all_ok = 0;
  const Status agree = mpi_call(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
  if (we_initialised) MPI_Finalize();  // every process is healthy here: nothing can block
  OMNI_RETURN_IF_ERROR(status);
  OMNI_RETURN_IF_ERROR(agree);
  if (!all_ok) return unavailable_error(str_cat("UcxTransport::init: rank ", rank, ": another process failed to connect"));
  g_engine = new std::shared_ptr<MessageEngine>(std::move(engine));
  return ok_status();
}

Status UcxTransport::finalize() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_engine == nullptr) return ok_status();
  (*g_engine)->shutdown(std::chrono::seconds(2));
  delete g_engine;
  g_engine = nullptr;
  return ok_status();
}

StatusOr<std::unique_ptr<UcxTransport>> UcxTransport::create_world(Timeout timeout) {
  std::shared_ptr<MessageEngine> engine;
  uint64_t k = 0;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_engine == nullptr) {
      return failed_precondition_error("UcxTransport::create_world: call UcxTransport::init() first (under mpirun)");
    }
    engine = *g_engine;
    k = g_worlds++;
  }
  OMNI_ASSIGN_OR_RETURN(std::unique_ptr<ChannelTransport> channel,
                        ChannelTransport::open(engine, MessageEngine::world_channel_id(k),
                                               std::vector<char>(static_cast<size_t>(engine->size()), 0)));
  OMNI_RETURN_IF_ERROR(channel->barrier(timeout).with_context("UcxTransport::create_world"));
  return std::unique_ptr<UcxTransport>(new UcxTransport(std::move(channel)));
}

}  // namespace omni

#else  // no UCX (or no MPI to bootstrap it)

namespace omni {

namespace {
Status not_built() {
  return unimplemented_error(
      "UcxTransport: this build has no UCX; configure with -DOMNI_WITH_MPI=ON -DOMNI_WITH_UCX=ON "
      "(Debian: libucx-dev, libopenmpi-dev, openmpi-bin)");
}
}  // namespace

bool UcxTransport::available() { return false; }
Status UcxTransport::init(int*, char***, Timeout) { return not_built(); }
Status UcxTransport::finalize() { return ok_status(); }
StatusOr<std::unique_ptr<UcxTransport>> UcxTransport::create_world(Timeout) { return not_built(); }

}  // namespace omni

#endif

namespace omni {

UcxTransport::UcxTransport(std::unique_ptr<Transport> channel) : ForwardingTransport(std::move(channel)) {}
UcxTransport::~UcxTransport() = default;

}  // namespace omni

#include "omniplacement/transport/mpi_transport.h"

#include "omniplacement/core/str_cat.h"

#if OMNI_HAVE_MPI

#include <mpi.h>

#include <mutex>

#include "channel_transport.h"
#include "message_engine.h"
#include "mpi_wire.h"

namespace omni {

using transport_internal::ChannelTransport;
using transport_internal::MessageEngine;

namespace {

std::mutex g_init_mu;
bool g_we_initialised = false;                   // guarded by g_init_mu
std::shared_ptr<MessageEngine>* g_engine = nullptr;  // guarded by g_init_mu; created by the first create_world()
uint64_t g_worlds = 0;                           // guarded by g_init_mu: world transports created

}  // namespace

bool MpiTransport::available() { return true; }

Status MpiTransport::init(int* argc, char*** argv) {
  std::lock_guard<std::mutex> lock(g_init_mu);
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (finalised) return failed_precondition_error("MpiTransport::init: MPI was already finalized");
  int provided = 0;
  if (!initialised) {
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) return internal_error(str_cat("MpiTransport::init: MPI_Init_thread failed (", rc, ")"));
    g_we_initialised = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    return failed_precondition_error(str_cat("MpiTransport::init: the MPI library provides thread level ", provided,
                                             ", MPI_THREAD_MULTIPLE (", MPI_THREAD_MULTIPLE,
                                             ") is required (the transport's progress thread and the application "
                                             "may both call MPI)"));
  }
  return ok_status();
}

Status MpiTransport::finalize() {
  std::lock_guard<std::mutex> lock(g_init_mu);
  if (g_engine != nullptr) {
    // Hands over what is in flight (never waits long on a peer that
    // stopped), then stops the only thread that calls MPI.
    (*g_engine)->shutdown(std::chrono::seconds(2));
    delete g_engine;
    g_engine = nullptr;
  }
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!g_we_initialised || finalised) return ok_status();
  const int rc = MPI_Finalize();
  if (rc != MPI_SUCCESS) return internal_error(str_cat("MpiTransport::finalize: MPI_Finalize failed (", rc, ")"));
  return ok_status();
}

StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::create_world(Timeout timeout) {
  OMNI_RETURN_IF_ERROR(init(nullptr, nullptr));
  std::shared_ptr<MessageEngine> engine;
  uint64_t k = 0;
  {
    std::lock_guard<std::mutex> lock(g_init_mu);
    if (g_engine == nullptr) {
      int size = 0;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      if (size > kMaxRanks) {
        return invalid_argument_error(str_cat("MpiTransport::create_world: ", size, " processes, at most ", kMaxRanks));
      }
      OMNI_ASSIGN_OR_RETURN(auto wire, transport_internal::make_mpi_wire());
      g_engine = new std::shared_ptr<MessageEngine>(MessageEngine::start(std::move(wire)));
    }
    engine = *g_engine;
    k = g_worlds++;
  }
  OMNI_ASSIGN_OR_RETURN(
      std::unique_ptr<ChannelTransport> channel,
      ChannelTransport::open(engine, MessageEngine::world_channel_id(k),
                             std::vector<char>(static_cast<size_t>(engine->size()), 0)));
  // Every process must have made this transport before it is used.
  OMNI_RETURN_IF_ERROR(channel->barrier(timeout).with_context("MpiTransport::create_world"));
  return std::unique_ptr<MpiTransport>(new MpiTransport(std::move(channel)));
}

}  // namespace omni

#else  // !OMNI_HAVE_MPI

namespace omni {

namespace {
Status not_built() {
  return unimplemented_error(
      "MpiTransport: this build has no MPI; configure with -DOMNI_WITH_MPI=ON (Debian: libopenmpi-dev, openmpi-bin)");
}
}  // namespace

bool MpiTransport::available() { return false; }
Status MpiTransport::init(int*, char***) { return not_built(); }
Status MpiTransport::finalize() { return ok_status(); }
StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::create_world(Timeout) { return not_built(); }

}  // namespace omni

#endif  // OMNI_HAVE_MPI

namespace omni {

// Without MPI no MpiTransport object can exist, so the channel is never null here.
MpiTransport::MpiTransport(std::unique_ptr<Transport> channel) : ForwardingTransport(std::move(channel)) {}
MpiTransport::~MpiTransport() = default;

}  // namespace omni

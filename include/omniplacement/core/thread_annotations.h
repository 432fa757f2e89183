// Thread-safety annotations: which mutex guards which data, checked at compile
// time by clang's -Wthread-safety (no-ops with other compilers), and a mutex
// type clang can reason about.
//
//   class Counter {
//    public:
//     void add(int64_t n) OMNI_EXCLUDES(mu_) {
//       omni::MutexLock lock(mu_);
//       total_ += n;                    // OK: mu_ is held
//     }
//     int64_t peek() const { return total_; }   // clang: reading total_ requires holding mu_
//    private:
//     mutable omni::Mutex mu_;
//     int64_t total_ OMNI_GUARDED_BY(mu_) = 0;
//   };
//
// std::mutex of libstdc++ carries no annotations, so clang cannot tell that a
// std::lock_guard holds it: locked state uses omni::Mutex and omni::MutexLock
// instead (the same std::mutex underneath). A condition variable waits on
// MutexLock::native(); its predicate runs with the mutex held, which a lambda
// says with OMNI_REQUIRES:
//
//   omni::MutexLock lock(mu_);
//   cv_.wait(lock.native(), [&]() OMNI_REQUIRES(mu_) { return ready_; });
//
// cmake/OmniHelpers.cmake turns -Wthread-safety on for clang builds.
// Thread safety: Mutex and MutexLock are what they say; any thread.
#pragma once

#include <mutex>

#if defined(__clang__)
#define OMNI_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define OMNI_THREAD_ANNOTATION(x)
#endif

// On a type: it is a lock ("mutex").
#define OMNI_CAPABILITY(name) OMNI_THREAD_ANNOTATION(capability(name))
// On an RAII type that holds a capability for its lifetime.
#define OMNI_SCOPED_CAPABILITY OMNI_THREAD_ANNOTATION(scoped_lockable)
// On a member: reading or writing it requires holding `mu`.
#define OMNI_GUARDED_BY(mu) OMNI_THREAD_ANNOTATION(guarded_by(mu))
// On a pointer member: the data it points to requires holding `mu`.
#define OMNI_PT_GUARDED_BY(mu) OMNI_THREAD_ANNOTATION(pt_guarded_by(mu))
// On a function: the caller must hold (REQUIRES) or must not hold (EXCLUDES) these.
#define OMNI_REQUIRES(...) OMNI_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define OMNI_EXCLUDES(...) OMNI_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: it acquires or releases these (no argument: `this`).
#define OMNI_ACQUIRE(...) OMNI_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define OMNI_RELEASE(...) OMNI_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// On a function the analysis cannot follow (say why next to it).
#define OMNI_NO_THREAD_SAFETY_ANALYSIS OMNI_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace omni {

// A std::mutex that clang's thread-safety analysis knows to be a lock.
class OMNI_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() OMNI_ACQUIRE() { mu_.lock(); }
  void unlock() OMNI_RELEASE() { mu_.unlock(); }
  // The std::mutex underneath (for MutexLock; not for locking by hand).
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex from construction until unlock() or destruction, whichever
// comes first. native() is the std::unique_lock a std::condition_variable
// waits on (the wait releases and re-acquires the same mutex).
class OMNI_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) OMNI_ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() OMNI_RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  // Releases the mutex before the end of the scope.
  void unlock() OMNI_RELEASE() { lock_.unlock(); }
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace omni

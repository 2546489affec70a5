// A minimal parallel for over [0, count) with a shared atomic cursor: each worker takes the next
// index until none is left and calls body(worker, index), worker in [0, threads). Results must
// not depend on which worker ran an index.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace liteattn {

inline int worker_count(int requested, std::int64_t count) {
  int threads = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, count)));
}

template <class Body>
void parallel_for(std::int64_t count, int threads, Body body) {
  std::atomic<std::int64_t> cursor{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&](int id) {
    try {
      for (std::int64_t i = cursor++; i < count; i = cursor++) body(id, i);
    } catch (...) {
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      cursor = count;
    }
  };
  if (threads <= 1) {
    worker(0);
  } else {
    std::vector<std::thread> pool;
    try {
      for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
    } catch (const std::system_error&) {
      // The system gave fewer threads than asked for: the ones started share the work.
    }
    worker(0);
    for (auto& t : pool) t.join();
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace liteattn

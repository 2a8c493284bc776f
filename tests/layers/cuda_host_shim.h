// Runs CUDA kernels as host code, for tests/layers/test_prroi_pool_cuda_on_host.py.
//
// Included before csrc/cuda/prroi_pool_cuda.cu, it defines the CUDA keywords away and turns each launch
// (PRROI_LAUNCH) into host threads: one std::thread per CUDA thread of a block, blocks one after another, with
// threadIdx / blockIdx per thread, a real barrier for __syncthreads, __shared__ arrays shared by the block's
// threads (function statics: only one block runs at a time) and atomicAdd as a compare-and-swap loop.
// CUDA_KERNEL_ASSERT counts failures instead of aborting, so a test can see the device-side last resort fire.
#pragma once

#define PRROI_HOST_EMULATION 1

#include <c10/core/Device.h>
#include <c10/macros/Macros.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ static

namespace prroi_host {

struct Dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

inline thread_local Dim3 thread_index, block_index;
inline Dim3 block_dim, grid_dim;
inline std::atomic<int64_t> kernel_assert_failures{0};

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      released_.notify_all();
    } else {
      released_.wait(lock, [&] { return generation_ != generation; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int count_, waiting_ = 0;
  uint64_t generation_ = 0;
};

inline Barrier* block_barrier = nullptr;

// Runs body() as `blocks` x `threads` CUDA threads.
template <typename Body>
void launch(unsigned int blocks, unsigned int threads, const Body& body) {
  grid_dim.x = blocks;
  block_dim.x = threads;
  for (unsigned int b = 0; b < blocks; ++b) {
    Barrier barrier(static_cast<int>(threads));
    block_barrier = &barrier;
    std::vector<std::thread> workers;
    workers.reserve(threads);
    for (unsigned int t = 0; t < threads; ++t)
      workers.emplace_back([&, b, t] {
        block_index.x = b;
        thread_index.x = t;
        body();
      });
    for (std::thread& worker : workers) worker.join();
    block_barrier = nullptr;
  }
}

inline double atomic_add(double* address, double value) {
  uint64_t* bits = reinterpret_cast<uint64_t*>(address);
  uint64_t expected = __atomic_load_n(bits, __ATOMIC_RELAXED), desired;
  double old;
  do {
    std::memcpy(&old, &expected, sizeof(old));
    const double sum = old + value;
    std::memcpy(&desired, &sum, sizeof(sum));
  } while (!__atomic_compare_exchange_n(bits, &expected, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}

}  // namespace prroi_host

#define threadIdx (prroi_host::thread_index)
#define blockIdx (prroi_host::block_index)
#define blockDim (prroi_host::block_dim)
#define gridDim (prroi_host::grid_dim)
#define __syncthreads() (prroi_host::block_barrier->wait())
#define atomicAdd(address, value) prroi_host::atomic_add(address, value)

#undef CUDA_KERNEL_ASSERT
#define CUDA_KERNEL_ASSERT(cond) \
  if (!(cond)) ++prroi_host::kernel_assert_failures

#define PRROI_LAUNCH(kernel, blocks, threads, stream, ...) \
  prroi_host::launch(blocks, threads, [&] { kernel(__VA_ARGS__); })
#define C10_CUDA_KERNEL_LAUNCH_CHECK()

using cudaStream_t = void*;
namespace at {
namespace cuda {
inline cudaStream_t getCurrentCUDAStream() { return nullptr; }
}  // namespace cuda
}  // namespace at
namespace c10 {
namespace cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
}  // namespace cuda
}  // namespace c10

// Element-wise maximum over FPN levels on CUDA (level_max.h): one thread per element (grid-stride) folds the
// levels with level_max_math.h's rule, the CPU kernel's; the backward writes each needed level's gradient in
// the same pass. The levels' pointers reach the kernel by value, in a struct.
//
// tests/layers/test_level_max.py compiles this file with the host compiler through tests/layers/cuda_host_shim.h
// (kernel launches run as host threads), so the kernels below are tested as they are written. Keep CUDA-only
// code behind PRROI_HOST_EMULATION.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#ifndef PRROI_HOST_EMULATION
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "../level_max.h"
#include "../level_max_math.h"
#include "cuda_launch.h"

namespace maskrcnn_benchmark {
namespace {

using cuda_launch::blocks_for;
using cuda_launch::kThreads;

template <typename T>
struct LevelPointers {
  T data[kLevelMaxMaxLevels];
};

template <typename scalar_t>
__global__ void level_max_forward_kernel(LevelPointers<const scalar_t*> levels, int num_levels, int64_t numel,
                                         scalar_t* value, unsigned char* source) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    scalar_t running = levels.data[0][i];
    unsigned char from = 0;
    for (int l = 1; l < num_levels; ++l)
      level_max::fold(levels.data[l][i], running, from, static_cast<unsigned char>(l));
    value[i] = running;
    source[i] = from;
  }
}

// grads.data[l] is null for a level whose gradient is not needed.
template <typename scalar_t>
__global__ void level_max_backward_kernel(const scalar_t* grad, const unsigned char* source, int num_levels,
                                          int64_t numel, LevelPointers<scalar_t*> grads) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const scalar_t g = grad[i];
    const unsigned char from = source[i];
    for (int l = 0; l < num_levels; ++l)
      if (grads.data[l] != nullptr) grads.data[l][i] = from == l ? g : scalar_t(0);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> level_max_forward_cuda(const std::vector<at::Tensor>& levels_in) {
  const c10::cuda::CUDAGuard device_guard(levels_in[0].device());
  std::vector<at::Tensor> levels;
  for (const at::Tensor& level : levels_in) levels.push_back(level.contiguous());
  at::Tensor value = at::empty(levels[0].sizes(), levels[0].options());
  at::Tensor source = at::empty(levels[0].sizes(), levels[0].options().dtype(at::kByte));
  const int64_t numel = value.numel();
  if (numel == 0) return std::make_tuple(value, source);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "level_max_forward_cuda", [&] {
    LevelPointers<const scalar_t*> pointers{};
    for (size_t l = 0; l < levels.size(); ++l) pointers.data[l] = levels[l].data_ptr<scalar_t>();
    PRROI_LAUNCH(level_max_forward_kernel<scalar_t>, blocks_for(numel), kThreads, stream, pointers,
                 static_cast<int>(levels.size()), numel, value.data_ptr<scalar_t>(), source.data_ptr<unsigned char>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return std::make_tuple(value, source);
}

std::vector<at::Tensor> level_max_backward_cuda(const at::Tensor& grad_in, const at::Tensor& source_in,
                                                const std::vector<bool>& needs_grad) {
  const c10::cuda::CUDAGuard device_guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), source = source_in.contiguous();
  std::vector<at::Tensor> grads;
  for (bool needed : needs_grad)
    grads.push_back(needed ? at::empty(grad.sizes(), grad.options()) : at::empty({0}, grad.options()));
  const int64_t numel = grad.numel();
  if (numel == 0) return grads;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "level_max_backward_cuda", [&] {
    LevelPointers<scalar_t*> pointers{};
    for (size_t l = 0; l < grads.size(); ++l) pointers.data[l] = needs_grad[l] ? grads[l].data_ptr<scalar_t>() : nullptr;
    PRROI_LAUNCH(level_max_backward_kernel<scalar_t>, blocks_for(numel), kThreads, stream, grad.data_ptr<scalar_t>(),
                 source.data_ptr<unsigned char>(), static_cast<int>(grads.size()), numel, pointers);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grads;
}

}  // namespace maskrcnn_benchmark

// Element-wise maximum over FPN levels on the CPU (level_max.h).
//
// The elements are split over threads with at::parallel_for; each thread walks its range in chunks small enough
// to stay in cache (kChunk elements), folding one level at a time into the chunk's running maximum and source,
// so each loop is a contiguous, vectorisable select and every level is read once.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../level_max.h"
#include "../level_max_math.h"
#include "vector_clones.h"

namespace maskrcnn_benchmark {
namespace {

constexpr int64_t kChunk = 4096;
constexpr int64_t kGrain = 1 << 15;  // below this many elements one thread does it all

template <typename scalar_t>
PRROI_VECTOR_CLONES void fold_level(const scalar_t* level, scalar_t* value, unsigned char* source, int64_t count,
                                    unsigned char index) {
  for (int64_t i = 0; i < count; ++i) level_max::fold(level[i], value[i], source[i], index);
}

template <typename scalar_t>
PRROI_VECTOR_CLONES void route_gradient(const scalar_t* grad, const unsigned char* source, scalar_t* out,
                                        int64_t count, unsigned char index) {
  for (int64_t i = 0; i < count; ++i) out[i] = source[i] == index ? grad[i] : scalar_t(0);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> level_max_forward_cpu(const std::vector<at::Tensor>& levels_in) {
  std::vector<at::Tensor> levels;
  for (const at::Tensor& level : levels_in) levels.push_back(level.contiguous());
  at::Tensor value = at::empty(levels[0].sizes(), levels[0].options());
  at::Tensor source = at::empty(levels[0].sizes(), levels[0].options().dtype(at::kByte));
  const int64_t numel = value.numel();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "level_max_forward_cpu", [&] {
    std::vector<const scalar_t*> data;
    for (const at::Tensor& level : levels) data.push_back(level.data_ptr<scalar_t>());
    scalar_t* value_data = value.data_ptr<scalar_t>();
    unsigned char* source_data = source.data_ptr<unsigned char>();
    at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t start = begin; start < end; start += kChunk) {
        const int64_t count = std::min(kChunk, end - start);
        std::memcpy(value_data + start, data[0] + start, count * sizeof(scalar_t));
        std::memset(source_data + start, 0, count);
        for (size_t l = 1; l < data.size(); ++l)
          fold_level(data[l] + start, value_data + start, source_data + start, count, static_cast<unsigned char>(l));
      }
    });
  });
  return std::make_tuple(value, source);
}

std::vector<at::Tensor> level_max_backward_cpu(const at::Tensor& grad_in, const at::Tensor& source_in,
                                               const std::vector<bool>& needs_grad) {
  const at::Tensor grad = grad_in.contiguous(), source = source_in.contiguous();
  std::vector<at::Tensor> grads;
  for (bool needed : needs_grad) grads.push_back(needed ? at::empty(grad.sizes(), grad.options()) : at::empty({0}, grad.options()));
  const int64_t numel = grad.numel();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "level_max_backward_cpu", [&] {
    const scalar_t* grad_data = grad.data_ptr<scalar_t>();
    const unsigned char* source_data = source.data_ptr<unsigned char>();
    at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t start = begin; start < end; start += kChunk) {
        const int64_t count = std::min(kChunk, end - start);
        for (size_t l = 0; l < grads.size(); ++l)
          if (needs_grad[l])
            route_gradient(grad_data + start, source_data + start, grads[l].data_ptr<scalar_t>() + start, count,
                           static_cast<unsigned char>(l));
      }
    });
  });
  return grads;
}

}  // namespace maskrcnn_benchmark

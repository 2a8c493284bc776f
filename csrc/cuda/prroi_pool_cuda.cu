// Precise RoI Pooling on CUDA.
//
// One thread per output bin evaluates wy @ F @ wx^T over the nodes its bin touches, with the node weights
// and line taps of prroi_pool_math.h (the CPU kernel's maths). The feature gradient spreads each bin's
// gradient over those nodes with atomics into a double buffer. The RoI gradient (edge-line integrals and the
// area term) sums over channels and corners inside one block per RoI, so no atomics contend on the four
// coordinates. Features of any of float, half, bfloat16 (and double) are read and written in their own type;
// RoIs are read as double (so float32 RoIs go with half features) and all arithmetic is in double.
//
// tests/layers/test_prroi_pool_cuda_on_host.py compiles this file with the host compiler: its shim defines
// PRROI_HOST_EMULATION, the CUDA keywords, threads, barriers, atomics and PRROI_LAUNCH (kernel launches run
// as host threads), so the kernels below are tested as they are written. Keep CUDA-only code behind those.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#ifndef PRROI_HOST_EMULATION
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <algorithm>

#include "../prroi_pool.h"
#include "../prroi_pool_math.h"
#include "cuda_launch.h"

namespace maskrcnn_benchmark {
namespace {

using prroi::RoiGeometry;

using cuda_launch::blocks_for;
using cuda_launch::kThreads;

// Last resort only: prroi_pool_check_roi_values (prroi_pool.h) refuses such RoIs on the host before any launch,
// with a catchable error. Returns false for a RoI that must not be read from; the assertion reports it.
__device__ inline bool roi_is_valid(const double* roi, int batch_size) {
  const double index = roi[0];
  const bool rois_column_0_is_a_batch_index_into_features =
      index >= 0.0 && index < batch_size && index == floor(index);
  const bool rois_coordinates_are_finite = isfinite(roi[1]) && isfinite(roi[2]) && isfinite(roi[3]) && isfinite(roi[4]);
  CUDA_KERNEL_ASSERT(rois_column_0_is_a_batch_index_into_features);
  CUDA_KERNEL_ASSERT(rois_coordinates_are_finite);
  return rois_column_0_is_a_batch_index_into_features && rois_coordinates_are_finite;
}

struct Shape {
  int batch_size, channels, height, width, pooled_h, pooled_w;
  double spatial_scale;
};

// Position of a flat index in a [outer, channels, rows, cols] tensor: output bins ([K, C, PH, PW]) in
// the forward and features-gradient kernels, bin corners ([C, PH + 1, PW + 1] per RoI) in the RoI gradient.
struct GridIndex {
  int64_t outer;
  int channel, row, col;
};

__device__ inline GridIndex decode_index(int64_t index, int channels, int rows, int cols) {
  GridIndex at;
  at.col = static_cast<int>(index % cols);
  index /= cols;
  at.row = static_cast<int>(index % rows);
  index /= rows;
  at.channel = static_cast<int>(index % channels);
  at.outer = index / channels;
  return at;
}

// Integral of f over [x_lo, x_hi] x [y_lo, y_hi]: wy @ F @ wx^T over the nodes the box touches.
template <typename scalar_t>
__device__ double box_integral(const scalar_t* __restrict__ plane, int height, int width, double x_lo, double x_hi,
                               double y_lo, double y_hi) {
  const prroi::NodeSpan ys = prroi::node_span(y_lo, y_hi, height), xs = prroi::node_span(x_lo, x_hi, width);
  double total = 0.0;
  for (int q = ys.first; q < ys.first + ys.count; ++q) {
    const scalar_t* row = plane + static_cast<int64_t>(q) * width;
    double along_x = 0.0;
    for (int p = xs.first; p < xs.first + xs.count; ++p)
      along_x += prroi::node_weight(x_lo, x_hi, p) * static_cast<double>(row[p]);
    total += prroi::node_weight(y_lo, y_hi, q) * along_x;
  }
  return total;
}

// Integral of f along the line x = `x` from y_lo to y_hi (transpose = true: along y = `x` from x_lo = y_lo to
// x_hi = y_hi, i.e. the same with the axes swapped).
template <typename scalar_t>
__device__ double line_integral(const scalar_t* __restrict__ plane, int height, int width, double x, double lo,
                                double hi, bool transpose) {
  const int along_size = transpose ? width : height, across_size = transpose ? height : width;
  const prroi::NodeSpan span = prroi::node_span(lo, hi, along_size);
  const prroi::LineTaps taps = prroi::line_taps(x, across_size);
  double total = 0.0;
  for (int n = span.first; n < span.first + span.count; ++n) {
    double value = 0.0;
    for (int t = 0; t < 2; ++t) {
      const int node = taps.node + t;
      if (node < 0 || node >= across_size) continue;  // zero padding
      const int64_t offset = transpose ? static_cast<int64_t>(node) * width + n : static_cast<int64_t>(n) * width + node;
      value += taps.weight[t] * static_cast<double>(plane[offset]);
    }
    total += prroi::node_weight(lo, hi, n) * value;
  }
  return total;
}

template <typename scalar_t>
__global__ void prroi_pool_forward_kernel(const scalar_t* __restrict__ features, const double* __restrict__ rois,
                                          Shape shape, int64_t total, scalar_t* __restrict__ output) {
  const int64_t plane_size = static_cast<int64_t>(shape.height) * shape.width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const GridIndex at = decode_index(index, shape.channels, shape.pooled_h, shape.pooled_w);
    const double* roi = rois + at.outer * 5;
    double value = 0.0;
    if (roi_is_valid(roi, shape.batch_size)) {
      const RoiGeometry g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
      if (g.bin_area > 0.0) {
        const scalar_t* plane = features + (static_cast<int64_t>(g.batch_index) * shape.channels + at.channel) * plane_size;
        value = box_integral(plane, shape.height, shape.width, g.x0 + at.col * g.bin_w, g.x0 + (at.col + 1) * g.bin_w,
                             g.y0 + at.row * g.bin_h, g.y0 + (at.row + 1) * g.bin_h) /
                g.bin_area;
      }
    }
    output[index] = static_cast<scalar_t>(value);
  }
}

// One thread per output bin spreads its gradient over the nodes the bin touches (atomics: bins overlap).
template <typename scalar_t>
__global__ void prroi_pool_features_grad_kernel(const scalar_t* __restrict__ grad_output,
                                                const double* __restrict__ rois, Shape shape, int64_t total,
                                                double* __restrict__ grad_features) {
  const int64_t plane_size = static_cast<int64_t>(shape.height) * shape.width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const GridIndex at = decode_index(index, shape.channels, shape.pooled_h, shape.pooled_w);
    const double* roi = rois + at.outer * 5;
    if (!roi_is_valid(roi, shape.batch_size)) continue;
    const RoiGeometry g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
    if (!(g.bin_area > 0.0)) continue;
    const double grad = static_cast<double>(grad_output[index]) / g.bin_area;
    if (grad == 0.0) continue;
    double* plane = grad_features + (static_cast<int64_t>(g.batch_index) * shape.channels + at.channel) * plane_size;
    const double x_lo = g.x0 + at.col * g.bin_w, x_hi = g.x0 + (at.col + 1) * g.bin_w;
    const double y_lo = g.y0 + at.row * g.bin_h, y_hi = g.y0 + (at.row + 1) * g.bin_h;
    const prroi::NodeSpan ys = prroi::node_span(y_lo, y_hi, shape.height);
    const prroi::NodeSpan xs = prroi::node_span(x_lo, x_hi, shape.width);
    for (int q = ys.first; q < ys.first + ys.count; ++q) {
      const double along_y = grad * prroi::node_weight(y_lo, y_hi, q);
      for (int p = xs.first; p < xs.first + xs.count; ++p)
        atomicAdd(plane + static_cast<int64_t>(q) * shape.width + p, along_y * prroi::node_weight(x_lo, x_hi, p));
    }
  }
}

// One block per RoI; each thread takes some (channel, corner (a, b)) items: the edge line x_b across bin row a,
// the edge line y_a across bin column b and bin (a, b) itself (where they exist), chained to the box as in
// prroi_pool_math.h; then the block reduces, so no atomics contend on the four coordinates.
template <typename scalar_t>
__global__ void prroi_pool_rois_grad_kernel(const scalar_t* __restrict__ grad_output,
                                            const scalar_t* __restrict__ features, const double* __restrict__ rois,
                                            Shape shape, double* __restrict__ grad_rois) {
  __shared__ double partial[4][kThreads];
  const int64_t k = blockIdx.x;
  const double* roi = rois + k * 5;
  const int64_t plane_size = static_cast<int64_t>(shape.height) * shape.width;
  const int corners_h = shape.pooled_h + 1, corners_w = shape.pooled_w + 1;
  const int64_t per_roi = static_cast<int64_t>(shape.channels) * corners_h * corners_w;
  const scalar_t* grad = grad_output + k * shape.channels * static_cast<int64_t>(shape.pooled_h) * shape.pooled_w;
  double box[4] = {0.0, 0.0, 0.0, 0.0};
  RoiGeometry g = {0, 0.0, 0.0, 0.0, 0.0, 0.0};
  if (roi_is_valid(roi, shape.batch_size))
    g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
  if (g.bin_area > 0.0) {
    for (int64_t local = threadIdx.x; local < per_roi; local += blockDim.x) {
      const GridIndex at = decode_index(local, shape.channels, corners_h, corners_w);
      const int a = at.row, b = at.col;
      const scalar_t* plane = features + (static_cast<int64_t>(g.batch_index) * shape.channels + at.channel) * plane_size;
      const scalar_t* channel_grad = grad + static_cast<int64_t>(at.channel) * shape.pooled_h * shape.pooled_w;
      // Upstream gradient of bin (row, col), zero beyond the RoI's bins.
      const auto grad_at = [&](int row, int col) {
        return (row < 0 || col < 0 || row >= shape.pooled_h || col >= shape.pooled_w)
                   ? 0.0
                   : static_cast<double>(channel_grad[row * shape.pooled_w + col]);
      };
      const double x = g.x0 + b * g.bin_w, y = g.y0 + a * g.bin_h;
      if (a < shape.pooled_h) {
        const double line = line_integral(plane, shape.height, shape.width, x, y, y + g.bin_h, false);
        prroi::chain_x_line(prroi::line_term(line, grad_at(a, b - 1), grad_at(a, b)) / g.bin_area, b,
                            shape.pooled_w, shape.spatial_scale, box);
      }
      if (b < shape.pooled_w) {
        const double line = line_integral(plane, shape.height, shape.width, y, x, x + g.bin_w, true);
        prroi::chain_y_line(prroi::line_term(line, grad_at(a - 1, b), grad_at(a, b)) / g.bin_area, a,
                            shape.pooled_h, shape.spatial_scale, box);
      }
      if (a < shape.pooled_h && b < shape.pooled_w) {
        const double integral = box_integral(plane, shape.height, shape.width, x, x + g.bin_w, y, y + g.bin_h);
        prroi::chain_bin_area(-grad_at(a, b) * integral / (g.bin_area * g.bin_area), g, shape.pooled_h,
                              shape.pooled_w, shape.spatial_scale, box);
      }
    }
  }
  for (int i = 0; i < 4; ++i) partial[i][threadIdx.x] = box[i];
  __syncthreads();
  for (int width = blockDim.x / 2; width > 0; width /= 2) {
    if (threadIdx.x < width)
      for (int i = 0; i < 4; ++i) partial[i][threadIdx.x] += partial[i][threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    grad_rois[k * 5] = 0.0;
    for (int i = 0; i < 4; ++i) grad_rois[k * 5 + 1 + i] = partial[i][0];
  }
}

Shape make_shape(const at::Tensor& features, int64_t pooled_height, int64_t pooled_width, double spatial_scale) {
  for (int d = 0; d < 4; ++d)
    TORCH_CHECK(features.size(d) < (1LL << 30), "prroi_pool: features dimension ", d, " is too large (",
                features.size(d), ")");
  return Shape{static_cast<int>(features.size(0)), static_cast<int>(features.size(1)),
               static_cast<int>(features.size(2)), static_cast<int>(features.size(3)),
               static_cast<int>(pooled_height),   static_cast<int>(pooled_width),
               spatial_scale};
}

}  // namespace

at::Tensor prroi_pool_forward_cuda(const at::Tensor& features_in, const at::Tensor& rois_in, int64_t pooled_height,
                                   int64_t pooled_width, double spatial_scale) {
  const c10::cuda::CUDAGuard device_guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.to(at::kDouble).contiguous();
  const Shape shape = make_shape(features, pooled_height, pooled_width, spatial_scale);
  at::Tensor output = at::empty({rois.size(0), features.size(1), pooled_height, pooled_width}, features.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_forward_cuda", [&] {
    PRROI_LAUNCH(prroi_pool_forward_kernel<scalar_t>, blocks_for(total), kThreads, stream,
                 features.data_ptr<scalar_t>(), rois.data_ptr<double>(), shape, total, output.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor> prroi_pool_backward_cuda(const at::Tensor& grad_output_in,
                                                            const at::Tensor& features_in, const at::Tensor& rois_in,
                                                            int64_t pooled_height, int64_t pooled_width,
                                                            double spatial_scale, bool features_need_grad,
                                                            bool rois_need_grad) {
  const c10::cuda::CUDAGuard device_guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.to(at::kDouble).contiguous();
  const at::Tensor grad_output = grad_output_in.to(features.scalar_type()).contiguous();
  const Shape shape = make_shape(features, pooled_height, pooled_width, spatial_scale);
  const int64_t num_rois = rois.size(0), total = grad_output.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  at::Tensor grad_features = at::empty({0}, features.options());
  if (features_need_grad) {
    if (total == 0) {
      grad_features = at::zeros_like(features);
    } else {
      at::Tensor grad_double = at::zeros(features.sizes(), features.options().dtype(at::kDouble));
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_features_grad_cuda", [&] {
            PRROI_LAUNCH(prroi_pool_features_grad_kernel<scalar_t>, blocks_for(total), kThreads, stream,
                         grad_output.data_ptr<scalar_t>(), rois.data_ptr<double>(), shape, total,
                         grad_double.data_ptr<double>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
      grad_features = grad_double.to(features.scalar_type());
    }
  }

  at::Tensor grad_rois = at::empty({0}, rois_in.options());
  if (rois_need_grad) {
    at::Tensor grad_double = at::zeros({num_rois, 5}, rois.options());
    if (num_rois > 0 && total > 0) {
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_rois_grad_cuda", [&] {
            PRROI_LAUNCH(prroi_pool_rois_grad_kernel<scalar_t>, static_cast<unsigned int>(num_rois), kThreads, stream,
                         grad_output.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), rois.data_ptr<double>(),
                         shape, grad_double.data_ptr<double>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
    }
    grad_rois = grad_double.to(rois_in.scalar_type());
  }
  return std::make_tuple(grad_features, grad_rois);
}

}  // namespace maskrcnn_benchmark

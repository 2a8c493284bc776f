// Precise RoI Pooling on CUDA.
//
// The padded summed-area tables ([N, C, H + 1, W + 1], double, see prroi_pool_math.h) come from ATen's
// cumsum on the current stream; one thread per output bin then evaluates the closed form at the bin's
// corners. The feature gradient scatters each bin's stencil weights into an adjoint table with atomics
// and a suffix sum (flip + cumsum) turns it into d(loss)/dF. The RoI gradient sums over channels and bins
// inside one block per RoI, so no atomics contend on the four coordinates. Inputs of any of float, half,
// bfloat16 (and double) are read and written in their own type; all arithmetic is in double.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "../prroi_pool.h"
#include "../prroi_pool_math.h"

namespace maskrcnn_benchmark {
namespace {

using prroi::AxisTaps;
using prroi::RoiGeometry;

constexpr int kThreads = 256;

inline int blocks_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
}

// Device-side counterpart of the CPU kernel's argument checks (a host check would need a synchronisation).
// Returns false for a RoI that must not be read from; the assertion reports it.
template <typename scalar_t>
__device__ inline bool roi_is_valid(const scalar_t* roi, int batch_size) {
  const double index = static_cast<double>(roi[0]);
  const bool rois_column_0_is_a_batch_index_into_features = index >= 0.0 && index < batch_size;
  const bool rois_coordinates_are_finite = isfinite(static_cast<double>(roi[1])) &&
                                           isfinite(static_cast<double>(roi[2])) &&
                                           isfinite(static_cast<double>(roi[3])) &&
                                           isfinite(static_cast<double>(roi[4]));
  CUDA_KERNEL_ASSERT(rois_column_0_is_a_batch_index_into_features);
  CUDA_KERNEL_ASSERT(rois_coordinates_are_finite);
  return rois_column_0_is_a_batch_index_into_features && rois_coordinates_are_finite;
}

struct Shape {
  int batch_size, channels, height, width, pooled_h, pooled_w;
  double spatial_scale;
};

template <typename scalar_t>
__global__ void prroi_pool_forward_kernel(const double* __restrict__ tables, const scalar_t* __restrict__ rois,
                                          Shape shape, int64_t total, scalar_t* __restrict__ output) {
  const int stride = shape.width + 1;
  const int64_t table_size = static_cast<int64_t>(shape.height + 1) * stride;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int pw = index % shape.pooled_w;
    const int ph = (index / shape.pooled_w) % shape.pooled_h;
    const int c = (index / (static_cast<int64_t>(shape.pooled_w) * shape.pooled_h)) % shape.channels;
    const int64_t k = index / (static_cast<int64_t>(shape.pooled_w) * shape.pooled_h * shape.channels);
    const scalar_t* roi = rois + k * 5;
    double value = 0.0;
    if (roi_is_valid(roi, shape.batch_size)) {
      const RoiGeometry g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
      if (g.bin_area > 0.0) {
        const double* table = tables + (static_cast<int64_t>(g.batch_index) * shape.channels + c) * table_size;
        const AxisTaps left = prroi::axis_taps(g.x0 + pw * g.bin_w, shape.width);
        const AxisTaps right = prroi::axis_taps(g.x0 + (pw + 1) * g.bin_w, shape.width);
        const AxisTaps top = prroi::axis_taps(g.y0 + ph * g.bin_h, shape.height);
        const AxisTaps bottom = prroi::axis_taps(g.y0 + (ph + 1) * g.bin_h, shape.height);
        value = prroi::bin_mean(g.bin_area, prroi::integral_at(table, stride, top, left),
                                prroi::integral_at(table, stride, top, right),
                                prroi::integral_at(table, stride, bottom, left),
                                prroi::integral_at(table, stride, bottom, right));
      }
    }
    output[index] = static_cast<scalar_t>(value);
  }
}

template <typename scalar_t>
__global__ void prroi_pool_features_grad_kernel(const scalar_t* __restrict__ grad_output,
                                                const scalar_t* __restrict__ rois, Shape shape, int64_t total,
                                                double* __restrict__ adjoint) {
  const int stride = shape.width + 1;
  const int64_t table_size = static_cast<int64_t>(shape.height + 1) * stride;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int pw = index % shape.pooled_w;
    const int ph = (index / shape.pooled_w) % shape.pooled_h;
    const int c = (index / (static_cast<int64_t>(shape.pooled_w) * shape.pooled_h)) % shape.channels;
    const int64_t k = index / (static_cast<int64_t>(shape.pooled_w) * shape.pooled_h * shape.channels);
    const scalar_t* roi = rois + k * 5;
    if (!roi_is_valid(roi, shape.batch_size)) continue;
    const RoiGeometry g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
    if (!(g.bin_area > 0.0)) continue;
    const double grad_integral = static_cast<double>(grad_output[index]) / g.bin_area;
    if (grad_integral == 0.0) continue;
    double* adj = adjoint + (static_cast<int64_t>(g.batch_index) * shape.channels + c) * table_size;
    auto add = [adj, stride](int j, int i, double v) { atomicAdd(adj + static_cast<int64_t>(j) * stride + i, v); };
    const AxisTaps left = prroi::axis_taps(g.x0 + pw * g.bin_w, shape.width);
    const AxisTaps right = prroi::axis_taps(g.x0 + (pw + 1) * g.bin_w, shape.width);
    const AxisTaps top = prroi::axis_taps(g.y0 + ph * g.bin_h, shape.height);
    const AxisTaps bottom = prroi::axis_taps(g.y0 + (ph + 1) * g.bin_h, shape.height);
    prroi::scatter_integral_grad(grad_integral, top, left, add);
    prroi::scatter_integral_grad(-grad_integral, top, right, add);
    prroi::scatter_integral_grad(-grad_integral, bottom, left, add);
    prroi::scatter_integral_grad(grad_integral, bottom, right, add);
  }
}

// One block per RoI: each thread sums the coordinate gradient of some (channel, bin) pairs, then the block reduces.
template <typename scalar_t>
__global__ void prroi_pool_rois_grad_kernel(const scalar_t* __restrict__ grad_output,
                                            const double* __restrict__ tables, const scalar_t* __restrict__ rois,
                                            Shape shape, scalar_t* __restrict__ grad_rois) {
  __shared__ double partial[4][kThreads];
  const int64_t k = blockIdx.x;
  const scalar_t* roi = rois + k * 5;
  const int stride = shape.width + 1;
  const int64_t table_size = static_cast<int64_t>(shape.height + 1) * stride;
  const int64_t per_roi = static_cast<int64_t>(shape.channels) * shape.pooled_h * shape.pooled_w;
  double box[4] = {0.0, 0.0, 0.0, 0.0};
  RoiGeometry g = {0, 0.0, 0.0, 0.0, 0.0, 0.0};
  if (roi_is_valid(roi, shape.batch_size))
    g = prroi::roi_geometry(roi, shape.spatial_scale, shape.pooled_h, shape.pooled_w);
  if (g.bin_area > 0.0) {
    for (int64_t local = threadIdx.x; local < per_roi; local += blockDim.x) {
      const int pw = local % shape.pooled_w;
      const int ph = (local / shape.pooled_w) % shape.pooled_h;
      const int c = local / (static_cast<int64_t>(shape.pooled_w) * shape.pooled_h);
      const double grad = static_cast<double>(grad_output[k * per_roi + local]);
      if (grad == 0.0) continue;
      const double* table = tables + (static_cast<int64_t>(g.batch_index) * shape.channels + c) * table_size;
      const AxisTaps xs[2] = {prroi::axis_taps(g.x0 + pw * g.bin_w, shape.width),
                              prroi::axis_taps(g.x0 + (pw + 1) * g.bin_w, shape.width)};
      const AxisTaps ys[2] = {prroi::axis_taps(g.y0 + ph * g.bin_h, shape.height),
                              prroi::axis_taps(g.y0 + (ph + 1) * g.bin_h, shape.height)};
      double s[4], sx[4], sy[4];
      for (int corner = 0; corner < 4; ++corner)
        prroi::integral_and_slopes_at(table, stride, ys[corner / 2], xs[corner % 2], &s[corner], &sx[corner],
                                      &sy[corner]);
      const prroi::EdgeGrad e = prroi::bin_edge_grad(grad, g, s, sx, sy);
      prroi::chain_edges_to_box(e, ph, pw, shape.pooled_h, shape.pooled_w, shape.spatial_scale, box);
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
    grad_rois[k * 5] = static_cast<scalar_t>(0.0);
    for (int i = 0; i < 4; ++i) grad_rois[k * 5 + 1 + i] = static_cast<scalar_t>(partial[i][0]);
  }
}

// Padded summed-area tables [N, C, H + 1, W + 1] in double (row and column 0 are zero).
at::Tensor summed_area_tables(const at::Tensor& features) {
  return at::constant_pad_nd(features.to(at::kDouble), {1, 0, 1, 0}, 0.0).cumsum(3).cumsum(2);
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
  const at::Tensor rois = rois_in.contiguous();
  const Shape shape = make_shape(features, pooled_height, pooled_width, spatial_scale);
  at::Tensor output = at::empty({rois.size(0), features.size(1), pooled_height, pooled_width}, features.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  const at::Tensor tables = summed_area_tables(features);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_forward_cuda", [&] {
    prroi_pool_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        tables.data_ptr<double>(), rois.data_ptr<scalar_t>(), shape, total, output.data_ptr<scalar_t>());
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
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor grad_output = grad_output_in.to(features.scalar_type()).contiguous();
  const Shape shape = make_shape(features, pooled_height, pooled_width, spatial_scale);
  const int64_t num_rois = rois.size(0), total = grad_output.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  at::Tensor grad_features = at::empty({0}, features.options());
  if (features_need_grad) {
    if (total == 0) {
      grad_features = at::zeros_like(features);
    } else {
      at::Tensor adjoint = at::zeros({shape.batch_size, shape.channels, shape.height + 1, shape.width + 1},
                                     features.options().dtype(at::kDouble));
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_features_grad_cuda", [&] {
            prroi_pool_features_grad_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
                grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), shape, total,
                adjoint.data_ptr<double>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
      // The table entry (j, i) sums F[:j, :i], so dF[q][p] is the suffix sum of the adjoint from (q+1, p+1).
      grad_features = adjoint.flip({2, 3}).cumsum(3).cumsum(2).flip({2, 3})
                          .narrow(2, 1, shape.height)
                          .narrow(3, 1, shape.width)
                          .to(features.scalar_type())
                          .contiguous();
    }
  }

  at::Tensor grad_rois = at::empty({0}, rois.options());
  if (rois_need_grad) {
    grad_rois = at::zeros({num_rois, 5}, rois.options());
    if (num_rois > 0 && total > 0) {
      const at::Tensor tables = summed_area_tables(features);
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, features.scalar_type(), "prroi_pool_rois_grad_cuda", [&] {
            prroi_pool_rois_grad_kernel<scalar_t><<<static_cast<unsigned int>(num_rois), kThreads, 0, stream>>>(
                grad_output.data_ptr<scalar_t>(), tables.data_ptr<double>(), rois.data_ptr<scalar_t>(), shape,
                grad_rois.data_ptr<scalar_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
    }
  }
  return std::make_tuple(grad_features, grad_rois);
}

}  // namespace maskrcnn_benchmark

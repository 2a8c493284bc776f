// Precise RoI Pooling (Jiang et al., "Acquisition of Localization Confidence for Accurate Object
// Detection", 2018): dispatch to the CPU or CUDA kernel after the checks both share.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include <tuple>

namespace maskrcnn_benchmark {

// features [N, C, H, W]; rois [K, 5] = (batch_index, x0, y0, x1, y1) in image coordinates -> [K, C, PH, PW].
at::Tensor prroi_pool_forward_cpu(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_height,
                                  int64_t pooled_width, double spatial_scale);
// -> (grad_features [N, C, H, W] or an empty tensor, grad_rois [K, 5] or an empty tensor).
std::tuple<at::Tensor, at::Tensor> prroi_pool_backward_cpu(const at::Tensor& grad_output, const at::Tensor& features,
                                                           const at::Tensor& rois, int64_t pooled_height,
                                                           int64_t pooled_width, double spatial_scale,
                                                           bool features_need_grad, bool rois_need_grad);

#ifdef WITH_CUDA
at::Tensor prroi_pool_forward_cuda(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_height,
                                   int64_t pooled_width, double spatial_scale);
std::tuple<at::Tensor, at::Tensor> prroi_pool_backward_cuda(const at::Tensor& grad_output, const at::Tensor& features,
                                                            const at::Tensor& rois, int64_t pooled_height,
                                                            int64_t pooled_width, double spatial_scale,
                                                            bool features_need_grad, bool rois_need_grad);
#endif

inline void prroi_pool_check_inputs(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_height,
                                    int64_t pooled_width, double spatial_scale) {
  TORCH_CHECK(features.dim() == 4, "prroi_pool: features must be [N, C, H, W], got shape ", features.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "prroi_pool: rois must be [K, 5] rows of (batch_index, x0, y0, x1, y1), got shape ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == features.scalar_type(), "prroi_pool: rois dtype ", rois.scalar_type(),
              " differs from features dtype ", features.scalar_type(), "; convert rois with .to(features.dtype)");
  TORCH_CHECK(rois.device() == features.device(), "prroi_pool: rois are on ", rois.device(),
              " but features are on ", features.device(), "; move rois with .to(features.device)");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "prroi_pool: pooled_height and pooled_width must be positive, got ",
              pooled_height, " x ", pooled_width);
  TORCH_CHECK(std::isfinite(spatial_scale) && spatial_scale > 0, "prroi_pool: spatial_scale must be positive, got ",
              spatial_scale);
}

inline at::Tensor prroi_pool_forward(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_height,
                                     int64_t pooled_width, double spatial_scale) {
  prroi_pool_check_inputs(features, rois, pooled_height, pooled_width, spatial_scale);
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return prroi_pool_forward_cuda(features, rois, pooled_height, pooled_width, spatial_scale);
#else
    TORCH_CHECK(false, "prroi_pool: maskrcnn_benchmark._C was built without CUDA; reinstall with a CUDA toolkit "
                       "(or FORCE_CUDA=1) to pool CUDA tensors");
#endif
  }
  TORCH_CHECK(features.is_cpu(), "prroi_pool: unsupported device ", features.device());
  return prroi_pool_forward_cpu(features, rois, pooled_height, pooled_width, spatial_scale);
}

inline std::tuple<at::Tensor, at::Tensor> prroi_pool_backward(const at::Tensor& grad_output,
                                                              const at::Tensor& features, const at::Tensor& rois,
                                                              int64_t pooled_height, int64_t pooled_width,
                                                              double spatial_scale, bool features_need_grad,
                                                              bool rois_need_grad) {
  prroi_pool_check_inputs(features, rois, pooled_height, pooled_width, spatial_scale);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == rois.size(0) &&
                  grad_output.size(1) == features.size(1) && grad_output.size(2) == pooled_height &&
                  grad_output.size(3) == pooled_width,
              "prroi_pool: grad_output has shape ", grad_output.sizes(), ", expected [", rois.size(0), ", ",
              features.size(1), ", ", pooled_height, ", ", pooled_width, "]");
  TORCH_CHECK(grad_output.device() == features.device(), "prroi_pool: grad_output is on ", grad_output.device(),
              " but features are on ", features.device());
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return prroi_pool_backward_cuda(grad_output, features, rois, pooled_height, pooled_width, spatial_scale,
                                    features_need_grad, rois_need_grad);
#else
    TORCH_CHECK(false, "prroi_pool: maskrcnn_benchmark._C was built without CUDA; reinstall with a CUDA toolkit "
                       "(or FORCE_CUDA=1) to pool CUDA tensors");
#endif
  }
  TORCH_CHECK(features.is_cpu(), "prroi_pool: unsupported device ", features.device());
  return prroi_pool_backward_cpu(grad_output, features, rois, pooled_height, pooled_width, spatial_scale,
                                 features_need_grad, rois_need_grad);
}

}  // namespace maskrcnn_benchmark

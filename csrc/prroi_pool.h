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
  const bool low_precision = features.scalar_type() == at::kHalf || features.scalar_type() == at::kBFloat16;
  TORCH_CHECK(rois.scalar_type() == features.scalar_type() || (low_precision && rois.scalar_type() == at::kFloat),
              "prroi_pool: rois dtype ", rois.scalar_type(), " differs from features dtype ", features.scalar_type(),
              "; convert rois with .to(features.dtype) (float16/bfloat16 features also take float32 rois)");
  TORCH_CHECK(rois.device() == features.device(), "prroi_pool: rois are on ", rois.device(),
              " but features are on ", features.device(), "; move rois with .to(features.device)");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "prroi_pool: pooled_height and pooled_width must be positive, got ",
              pooled_height, " x ", pooled_width);
  TORCH_CHECK(std::isfinite(spatial_scale) && spatial_scale > 0, "prroi_pool: spatial_scale must be positive, got ",
              spatial_scale);
}

// The same rules and messages on every device, checked here on the host (one synchronisation on CUDA) so that
// a bad RoI raises a catchable error instead of a device-side assert, which would poison the CUDA context.
// The Python implementation (layers/prroi_pool.py, _check_roi_values) applies the same rules.
inline void prroi_pool_check_roi_values(const at::Tensor& rois, int64_t batch_size) {
  if (rois.size(0) == 0) return;
  const at::Tensor values = rois.detach().to(at::kDouble);
  const at::Tensor index = values.select(1, 0);
  const at::Tensor good_index = index.isfinite() & (index == index.floor()) & (index >= 0) & (index < batch_size);
  const at::Tensor bad = at::cat({good_index.logical_not().unsqueeze(1), values.narrow(1, 1, 4).isfinite().logical_not()}, 1);
  if (!bad.any().item<bool>()) return;
  const at::Tensor bad_cpu = bad.cpu(), values_cpu = values.cpu();
  const int64_t first = bad_cpu.flatten().to(at::kByte).argmax().item<int64_t>();
  const int64_t k = first / 5, col = first % 5;
  const double value = values_cpu[k][col].item<double>();
  TORCH_CHECK(col != 0, "prroi_pool: rois[", k, ", 0] = ", value, " is not a batch index into features (batch size ",
              batch_size, "); column 0 of rois must hold the image index");
  TORCH_CHECK(false, "prroi_pool: rois[", k, ", ", col, "] = ", value,
              " is not finite; box coordinates must be finite numbers");
}

inline at::Tensor prroi_pool_forward(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_height,
                                     int64_t pooled_width, double spatial_scale) {
  prroi_pool_check_inputs(features, rois, pooled_height, pooled_width, spatial_scale);
  prroi_pool_check_roi_values(rois, features.size(0));
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
  prroi_pool_check_roi_values(rois, features.size(0));
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

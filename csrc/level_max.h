// Element-wise maximum over FPN levels with the level each element came from (the discriminators'
// MODEL.GAN.FEATURE_FUSION "max"): one pass over the levels instead of a chain of torch.maximum, each of which
// writes a new tensor, and a uint8 source index from which the backward routes the gradient.
// Dispatch to the CPU or CUDA kernel after the checks both share.
#pragma once

#include <ATen/ATen.h>

#include <tuple>
#include <vector>

namespace maskrcnn_benchmark {

// Levels one call takes (FPN has 4 or 5): the CUDA kernel receives their pointers by value.
constexpr int64_t kLevelMaxMaxLevels = 16;

// levels: L same-shaped tensors -> (maximum, uint8 source level), both contiguous and of that shape.
std::tuple<at::Tensor, at::Tensor> level_max_forward_cpu(const std::vector<at::Tensor>& levels);
// -> L tensors: grad where source == l, else 0; an empty tensor for a level whose gradient is not needed.
std::vector<at::Tensor> level_max_backward_cpu(const at::Tensor& grad, const at::Tensor& source,
                                               const std::vector<bool>& needs_grad);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> level_max_forward_cuda(const std::vector<at::Tensor>& levels);
std::vector<at::Tensor> level_max_backward_cuda(const at::Tensor& grad, const at::Tensor& source,
                                                const std::vector<bool>& needs_grad);
#endif

inline void level_max_check_levels(const std::vector<at::Tensor>& levels) {
  TORCH_CHECK(!levels.empty() && static_cast<int64_t>(levels.size()) <= kLevelMaxMaxLevels,
              "level_max: takes 1 to ", kLevelMaxMaxLevels, " levels, got ", levels.size());
  const at::Tensor& first = levels[0];
  TORCH_CHECK(first.scalar_type() == at::kFloat || first.scalar_type() == at::kDouble,
              "level_max: levels must be float32 or float64, got ", first.scalar_type());
  for (size_t l = 1; l < levels.size(); ++l) {
    TORCH_CHECK(levels[l].sizes() == first.sizes(), "level_max: levels[", l, "] has shape ", levels[l].sizes(),
                " but levels[0] has shape ", first.sizes(), "; pool every level to the same shape");
    TORCH_CHECK(levels[l].scalar_type() == first.scalar_type(), "level_max: levels[", l, "] is ",
                levels[l].scalar_type(), " but levels[0] is ", first.scalar_type());
    TORCH_CHECK(levels[l].device() == first.device(), "level_max: levels[", l, "] is on ", levels[l].device(),
                " but levels[0] is on ", first.device());
  }
}

inline void level_max_check_backward(const at::Tensor& grad, const at::Tensor& source,
                                     const std::vector<bool>& needs_grad) {
  TORCH_CHECK(source.scalar_type() == at::kByte, "level_max: source must be uint8, got ", source.scalar_type());
  TORCH_CHECK(grad.sizes() == source.sizes(), "level_max: grad has shape ", grad.sizes(), " but source has shape ",
              source.sizes());
  TORCH_CHECK(grad.device() == source.device(), "level_max: grad is on ", grad.device(), " but source is on ",
              source.device());
  TORCH_CHECK(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble,
              "level_max: grad must be float32 or float64, got ", grad.scalar_type());
  TORCH_CHECK(!needs_grad.empty() && static_cast<int64_t>(needs_grad.size()) <= kLevelMaxMaxLevels,
              "level_max: takes 1 to ", kLevelMaxMaxLevels, " levels, got ", needs_grad.size());
}

[[noreturn]] inline void level_max_fail_without_cuda() {
  TORCH_CHECK(false, "level_max: maskrcnn_benchmark._C was built without CUDA; reinstall with a CUDA toolkit "
                     "(or FORCE_CUDA=1) for CUDA tensors");
}

inline std::tuple<at::Tensor, at::Tensor> level_max_forward(const std::vector<at::Tensor>& levels) {
  level_max_check_levels(levels);
  if (levels[0].is_cuda()) {
#ifdef WITH_CUDA
    return level_max_forward_cuda(levels);
#else
    level_max_fail_without_cuda();
#endif
  }
  TORCH_CHECK(levels[0].is_cpu(), "level_max: unsupported device ", levels[0].device());
  return level_max_forward_cpu(levels);
}

inline std::vector<at::Tensor> level_max_backward(const at::Tensor& grad, const at::Tensor& source,
                                                  const std::vector<bool>& needs_grad) {
  level_max_check_backward(grad, source, needs_grad);
  if (grad.is_cuda()) {
#ifdef WITH_CUDA
    return level_max_backward_cuda(grad, source, needs_grad);
#else
    level_max_fail_without_cuda();
#endif
  }
  TORCH_CHECK(grad.is_cpu(), "level_max: unsupported device ", grad.device());
  return level_max_backward_cpu(grad, source, needs_grad);
}

}  // namespace maskrcnn_benchmark

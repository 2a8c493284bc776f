// The single binding file of maskrcnn_benchmark._C.
#include <torch/extension.h>

#include "prroi_pool.h"

namespace {
constexpr bool kWithCuda =
#ifdef WITH_CUDA
    true;
#else
    false;
#endif
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled ops of maskrcnn_benchmark";
  m.def("prroi_pool_forward", &maskrcnn_benchmark::prroi_pool_forward,
        "Precise RoI Pooling: features [N, C, H, W], rois [K, 5] -> [K, C, PH, PW]", py::arg("features"),
        py::arg("rois"), py::arg("pooled_height"), py::arg("pooled_width"), py::arg("spatial_scale"));
  m.def("prroi_pool_backward", &maskrcnn_benchmark::prroi_pool_backward,
        "Gradients of Precise RoI Pooling -> (grad_features or empty, grad_rois or empty)", py::arg("grad_output"),
        py::arg("features"), py::arg("rois"), py::arg("pooled_height"), py::arg("pooled_width"),
        py::arg("spatial_scale"), py::arg("features_need_grad"), py::arg("rois_need_grad"));
  m.def("has_cuda", []() { return kWithCuda; }, "Whether the CUDA kernels were compiled in");
  m.attr("with_cuda") = kWithCuda;
}

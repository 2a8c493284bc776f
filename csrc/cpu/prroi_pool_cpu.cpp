// Precise RoI Pooling on the CPU.
//
// Work is split over (image, channel) planes with at::parallel_for: each task builds the plane's
// summed-area table once (in a buffer that stays in cache) and serves every RoI of that image from it,
// so the per-RoI cost is a 3x3 stencil per bin corner whatever the box size. The stencil is separable:
// the x taps are applied once per distinct table row the RoI's y taps touch (neighbouring edges share
// rows when bins are small), then the y taps combine those rows with contiguous, vectorisable loops.
// The feature gradient is the adjoint (rows of corner gradients, scattered along x into a per-plane
// table, then a suffix sum gives d(loss)/dF). Per-RoI taps and rows are computed once for all channels.
#include <ATen/Parallel.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../prroi_pool.h"
#include "../prroi_pool_math.h"

namespace maskrcnn_benchmark {
namespace {

using prroi::AxisTaps;
using prroi::RoiGeometry;

// What every channel needs to know about the RoIs: geometry, taps of the bin edges, RoIs per image.
struct RoiPlan {
  std::vector<RoiGeometry> geometry;        // [K]
  std::vector<AxisTaps> x_taps;             // [K, PW + 1]
  std::vector<AxisTaps> y_taps;             // [K, PH + 1]
  std::vector<std::vector<int64_t>> rois_of_image;  // [N] -> RoI indices
  std::vector<int64_t> row_begin;           // [K + 1] offsets into rows
  std::vector<int> rows;                    // distinct table rows touched by each RoI's y taps, ascending
  std::vector<int> y_slot;                  // [K, PH + 1, 3] position of each y tap's row in the RoI's rows
  int64_t max_rows = 0;
};

template <typename scalar_t>
RoiPlan plan_rois(const scalar_t* rois, int64_t num_rois, int64_t batch_size, int64_t height, int64_t width,
                  int64_t pooled_h, int64_t pooled_w, double spatial_scale) {
  RoiPlan plan;
  plan.geometry.resize(num_rois);
  plan.x_taps.resize(num_rois * (pooled_w + 1));
  plan.y_taps.resize(num_rois * (pooled_h + 1));
  plan.rois_of_image.resize(batch_size);
  for (int64_t k = 0; k < num_rois; ++k) {
    const scalar_t* roi = rois + k * 5;
    const double index = static_cast<double>(roi[0]);
    TORCH_CHECK(std::isfinite(index) && index == std::floor(index) && index >= 0 && index < batch_size,
                "prroi_pool: rois[", k, ", 0] = ", index, " is not a batch index into features (batch size ",
                batch_size, "); column 0 of rois must hold the image index");
    for (int col = 1; col < 5; ++col) {
      TORCH_CHECK(std::isfinite(static_cast<double>(roi[col])), "prroi_pool: rois[", k, ", ", col, "] = ",
                  static_cast<double>(roi[col]), " is not finite; box coordinates must be finite numbers");
    }
    const RoiGeometry g = prroi::roi_geometry(roi, spatial_scale, pooled_h, pooled_w);
    plan.geometry[k] = g;
    plan.rois_of_image[g.batch_index].push_back(k);
    for (int64_t b = 0; b <= pooled_w; ++b)
      plan.x_taps[k * (pooled_w + 1) + b] = prroi::axis_taps(g.x0 + b * g.bin_w, width);
    for (int64_t a = 0; a <= pooled_h; ++a)
      plan.y_taps[k * (pooled_h + 1) + a] = prroi::axis_taps(g.y0 + a * g.bin_h, height);
  }
  plan.row_begin.assign(1, 0);
  plan.y_slot.resize(num_rois * (pooled_h + 1) * 3);
  std::vector<int> touched;
  for (int64_t k = 0; k < num_rois; ++k) {
    const AxisTaps* yt = plan.y_taps.data() + k * (pooled_h + 1);
    touched.clear();
    for (int64_t a = 0; a <= pooled_h; ++a)
      for (int r = 0; r < 3; ++r) touched.push_back(yt[a].index[r]);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (int64_t a = 0; a <= pooled_h; ++a)
      for (int r = 0; r < 3; ++r)
        plan.y_slot[(k * (pooled_h + 1) + a) * 3 + r] = static_cast<int>(
            std::lower_bound(touched.begin(), touched.end(), yt[a].index[r]) - touched.begin());
    plan.rows.insert(plan.rows.end(), touched.begin(), touched.end());
    plan.row_begin.push_back(static_cast<int64_t>(plan.rows.size()));
    plan.max_rows = std::max<int64_t>(plan.max_rows, static_cast<int64_t>(touched.size()));
  }
  return plan;
}

// Padded summed-area table of one plane: table[(j + 1) * (W + 1) + i + 1] = sum of plane[:j+1, :i+1].
template <typename scalar_t>
void build_table(const scalar_t* plane, int64_t height, int64_t width, double* table) {
  const int64_t stride = width + 1;
  std::fill(table, table + stride, 0.0);
  for (int64_t j = 0; j < height; ++j) {
    double* row = table + (j + 1) * stride;
    const double* above = row - stride;
    const scalar_t* src = plane + j * width;
    double running = 0.0;
    row[0] = 0.0;
    for (int64_t i = 0; i < width; ++i) {
      running += static_cast<double>(src[i]);
      row[i + 1] = above[i + 1] + running;
    }
  }
}

// Planes per parallel task: small problems run inline, since waking threads costs more than the work.
int64_t planes_per_task(const RoiPlan& plan, int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                        int64_t pooled_w) {
  const int64_t planes = static_cast<int64_t>(plan.rois_of_image.size()) * channels;
  const int64_t work = planes * (height + 1) * (width + 1) +
                       static_cast<int64_t>(plan.geometry.size()) * channels * (pooled_h + 1) * (pooled_w + 1) * 9;
  const int64_t work_per_plane = std::max<int64_t>(1, work / std::max<int64_t>(1, planes));
  return std::max<int64_t>(1, 32768 / work_per_plane);
}

template <typename scalar_t>
void forward_kernel(const scalar_t* features, const RoiPlan& plan, int64_t channels, int64_t height, int64_t width,
                    int64_t pooled_h, int64_t pooled_w, scalar_t* output) {
  const int64_t batch_size = static_cast<int64_t>(plan.rois_of_image.size());
  const int64_t corners_w = pooled_w + 1, corners_h = pooled_h + 1, stride = width + 1;
  const int64_t grain = planes_per_task(plan, channels, height, width, pooled_h, pooled_w);
  at::parallel_for(0, batch_size * channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> table((height + 1) * stride);
    std::vector<double> corner(corners_h * corners_w), row_values(plan.max_rows * corners_w);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / channels, c = plane % channels;
      if (plan.rois_of_image[n].empty()) continue;
      build_table(features + plane * height * width, height, width, table.data());
      for (int64_t k : plan.rois_of_image[n]) {
        const RoiGeometry& g = plan.geometry[k];
        if (!(g.bin_area > 0.0)) continue;  // output was zero-initialised
        const AxisTaps* xt = plan.x_taps.data() + k * corners_w;
        const AxisTaps* yt = plan.y_taps.data() + k * corners_h;
        const int* slot = plan.y_slot.data() + k * corners_h * 3;
        const int* rows = plan.rows.data() + plan.row_begin[k];
        const int64_t num_rows = plan.row_begin[k + 1] - plan.row_begin[k];
        // x taps on every touched row: row_values[j][b] = sum_s wx[b][s] * T[rows[j]][ix[b][s]]
        for (int64_t j = 0; j < num_rows; ++j) {
          const double* trow = table.data() + static_cast<int64_t>(rows[j]) * stride;
          double* dst = row_values.data() + j * corners_w;
          for (int64_t b = 0; b < corners_w; ++b)
            dst[b] = xt[b].weight[0] * trow[xt[b].index[0]] + xt[b].weight[1] * trow[xt[b].index[1]] +
                     xt[b].weight[2] * trow[xt[b].index[2]];
        }
        // y taps: S[a][b] = sum_r wy[a][r] * row_values[slot[a][r]][b]
        for (int64_t a = 0; a < corners_h; ++a) {
          const double* r0 = row_values.data() + slot[a * 3] * corners_w;
          const double* r1 = row_values.data() + slot[a * 3 + 1] * corners_w;
          const double* r2 = row_values.data() + slot[a * 3 + 2] * corners_w;
          const double w0 = yt[a].weight[0], w1 = yt[a].weight[1], w2 = yt[a].weight[2];
          double* dst = corner.data() + a * corners_w;
          for (int64_t b = 0; b < corners_w; ++b) dst[b] = w0 * r0[b] + w1 * r1[b] + w2 * r2[b];
        }
        scalar_t* out = output + (k * channels + c) * pooled_h * pooled_w;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          const double* top = corner.data() + ph * corners_w;
          const double* bottom = top + corners_w;
          for (int64_t pw = 0; pw < pooled_w; ++pw)
            out[ph * pooled_w + pw] =
                static_cast<scalar_t>(prroi::bin_mean(g.bin_area, top[pw], top[pw + 1], bottom[pw], bottom[pw + 1]));
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad_output, const scalar_t* features, const RoiPlan& plan, int64_t channels,
                     int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                     scalar_t* grad_features, double* grad_box_per_channel) {
  const int64_t batch_size = static_cast<int64_t>(plan.rois_of_image.size());
  const int64_t corners_w = pooled_w + 1, corners_h = pooled_h + 1, stride = width + 1;
  const bool want_features = grad_features != nullptr, want_boxes = grad_box_per_channel != nullptr;
  const int64_t grain = planes_per_task(plan, channels, height, width, pooled_h, pooled_w);
  at::parallel_for(0, batch_size * channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> table(want_boxes ? (height + 1) * stride : 0);
    std::vector<double> adjoint(want_features ? (height + 1) * stride : 0);
    std::vector<double> s(corners_h * corners_w), sx(s.size()), sy(s.size()), corner_grad(s.size());
    std::vector<double> row_values(plan.max_rows * corners_w), row_slopes(row_values.size());
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / channels, c = plane % channels;
      if (plan.rois_of_image[n].empty()) continue;  // grad_features was zero-initialised
      if (want_boxes) build_table(features + plane * height * width, height, width, table.data());
      if (want_features) std::fill(adjoint.begin(), adjoint.end(), 0.0);
      for (int64_t k : plan.rois_of_image[n]) {
        const RoiGeometry& g = plan.geometry[k];
        if (!(g.bin_area > 0.0)) continue;  // zero-area bins are constant 0: no gradient
        const AxisTaps* xt = plan.x_taps.data() + k * corners_w;
        const AxisTaps* yt = plan.y_taps.data() + k * corners_h;
        const scalar_t* go = grad_output + (k * channels + c) * pooled_h * pooled_w;
        const int* slot = plan.y_slot.data() + k * corners_h * 3;
        const int* rows = plan.rows.data() + plan.row_begin[k];
        const int64_t num_rows = plan.row_begin[k + 1] - plan.row_begin[k];
        if (want_boxes) {
          // S, dS/dx, dS/dy at the corners, separably as in the forward pass.
          for (int64_t j = 0; j < num_rows; ++j) {
            const double* trow = table.data() + static_cast<int64_t>(rows[j]) * stride;
            double* value = row_values.data() + j * corners_w;
            double* slope = row_slopes.data() + j * corners_w;
            for (int64_t b = 0; b < corners_w; ++b) {
              const double t0 = trow[xt[b].index[0]], t1 = trow[xt[b].index[1]], t2 = trow[xt[b].index[2]];
              value[b] = xt[b].weight[0] * t0 + xt[b].weight[1] * t1 + xt[b].weight[2] * t2;
              slope[b] = xt[b].slope[0] * t0 + xt[b].slope[1] * t1 + xt[b].slope[2] * t2;
            }
          }
          for (int64_t a = 0; a < corners_h; ++a) {
            const int64_t o0 = slot[a * 3] * corners_w, o1 = slot[a * 3 + 1] * corners_w,
                          o2 = slot[a * 3 + 2] * corners_w;
            const double w0 = yt[a].weight[0], w1 = yt[a].weight[1], w2 = yt[a].weight[2];
            const double d0 = yt[a].slope[0], d1 = yt[a].slope[1], d2 = yt[a].slope[2];
            const double* v = row_values.data();
            const double* dv = row_slopes.data();
            for (int64_t b = 0; b < corners_w; ++b) {
              const int64_t at = a * corners_w + b;
              s[at] = w0 * v[o0 + b] + w1 * v[o1 + b] + w2 * v[o2 + b];
              sx[at] = w0 * dv[o0 + b] + w1 * dv[o1 + b] + w2 * dv[o2 + b];
              sy[at] = d0 * v[o0 + b] + d1 * v[o1 + b] + d2 * v[o2 + b];
            }
          }
          double box[4] = {0.0, 0.0, 0.0, 0.0};
          for (int64_t ph = 0; ph < pooled_h; ++ph)
            for (int64_t pw = 0; pw < pooled_w; ++pw) {
              const int64_t ids[4] = {ph * corners_w + pw, ph * corners_w + pw + 1, (ph + 1) * corners_w + pw,
                                      (ph + 1) * corners_w + pw + 1};
              const double cs[4] = {s[ids[0]], s[ids[1]], s[ids[2]], s[ids[3]]};
              const double csx[4] = {sx[ids[0]], sx[ids[1]], sx[ids[2]], sx[ids[3]]};
              const double csy[4] = {sy[ids[0]], sy[ids[1]], sy[ids[2]], sy[ids[3]]};
              const prroi::EdgeGrad e =
                  prroi::bin_edge_grad(static_cast<double>(go[ph * pooled_w + pw]), g, cs, csx, csy);
              prroi::chain_edges_to_box(e, ph, pw, pooled_h, pooled_w, spatial_scale, box);
            }
          double* dst = grad_box_per_channel + (k * channels + c) * 4;
          for (int i = 0; i < 4; ++i) dst[i] = box[i];
        }
        if (want_features) {
          // d(loss)/dS at each corner: +, -, -, + of the four-corner difference of every bin touching it.
          std::fill(corner_grad.begin(), corner_grad.end(), 0.0);
          for (int64_t ph = 0; ph < pooled_h; ++ph)
            for (int64_t pw = 0; pw < pooled_w; ++pw) {
              const double gi = static_cast<double>(go[ph * pooled_w + pw]) / g.bin_area;
              corner_grad[ph * corners_w + pw] += gi;
              corner_grad[ph * corners_w + pw + 1] -= gi;
              corner_grad[(ph + 1) * corners_w + pw] -= gi;
              corner_grad[(ph + 1) * corners_w + pw + 1] += gi;
            }
          // Adjoint of the separable evaluation: y taps gather corner gradients into rows, x taps scatter them.
          std::fill(row_values.begin(), row_values.begin() + num_rows * corners_w, 0.0);
          for (int64_t a = 0; a < corners_h; ++a) {
            const double* cg = corner_grad.data() + a * corners_w;
            for (int r = 0; r < 3; ++r) {
              const double w = yt[a].weight[r];
              double* dst = row_values.data() + slot[a * 3 + r] * corners_w;
              for (int64_t b = 0; b < corners_w; ++b) dst[b] += w * cg[b];
            }
          }
          for (int64_t j = 0; j < num_rows; ++j) {
            double* arow = adjoint.data() + static_cast<int64_t>(rows[j]) * stride;
            const double* src = row_values.data() + j * corners_w;
            for (int64_t b = 0; b < corners_w; ++b) {
              const double v = src[b];
              arow[xt[b].index[0]] += v * xt[b].weight[0];
              arow[xt[b].index[1]] += v * xt[b].weight[1];
              arow[xt[b].index[2]] += v * xt[b].weight[2];
            }
          }
        }
      }
      if (want_features) {
        // The table entry (j, i) sums F[:j, :i], so dF[q][p] is the suffix sum of the adjoint from (q+1, p+1).
        scalar_t* dst = grad_features + plane * height * width;
        double* adj = adjoint.data();
        for (int64_t j = height; j >= 1; --j) {
          double running = 0.0;
          double* row = adj + j * stride;
          const double* below = row + stride;
          for (int64_t i = width; i >= 1; --i) {
            running += row[i];
            row[i] = running + (j < height ? below[i] : 0.0);
            dst[(j - 1) * width + (i - 1)] = static_cast<scalar_t>(row[i]);
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor prroi_pool_forward_cpu(const at::Tensor& features_in, const at::Tensor& rois_in, int64_t pooled_height,
                                  int64_t pooled_width, double spatial_scale) {
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const int64_t batch_size = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3), num_rois = rois.size(0);
  at::Tensor output = at::zeros({num_rois, channels, pooled_height, pooled_width}, features.options());
  if (num_rois == 0 || channels == 0) return output;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "prroi_pool_forward_cpu", [&] {
    const RoiPlan plan = plan_rois(rois.data_ptr<scalar_t>(), num_rois, batch_size, height, width, pooled_height,
                                   pooled_width, spatial_scale);
    forward_kernel(features.data_ptr<scalar_t>(), plan, channels, height, width, pooled_height, pooled_width,
                   output.data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor> prroi_pool_backward_cpu(const at::Tensor& grad_output_in,
                                                           const at::Tensor& features_in, const at::Tensor& rois_in,
                                                           int64_t pooled_height, int64_t pooled_width,
                                                           double spatial_scale, bool features_need_grad,
                                                           bool rois_need_grad) {
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor grad_output = grad_output_in.to(features.scalar_type()).contiguous();
  const int64_t batch_size = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3), num_rois = rois.size(0);
  at::Tensor grad_features = features_need_grad ? at::zeros_like(features) : at::empty({0}, features.options());
  at::Tensor grad_box_per_channel =
      rois_need_grad ? at::zeros({num_rois, channels, 4}, features.options().dtype(at::kDouble))
                     : at::empty({0}, features.options().dtype(at::kDouble));
  if (num_rois > 0 && channels > 0 && (features_need_grad || rois_need_grad)) {
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "prroi_pool_backward_cpu", [&] {
      const RoiPlan plan = plan_rois(rois.data_ptr<scalar_t>(), num_rois, batch_size, height, width, pooled_height,
                                     pooled_width, spatial_scale);
      backward_kernel(grad_output.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), plan, channels, height,
                      width, pooled_height, pooled_width, spatial_scale,
                      features_need_grad ? grad_features.data_ptr<scalar_t>() : nullptr,
                      rois_need_grad ? grad_box_per_channel.data_ptr<double>() : nullptr);
    });
  }
  at::Tensor grad_rois = at::empty({0}, rois.options());
  if (rois_need_grad) {
    grad_rois = at::zeros({num_rois, 5}, rois.options());
    if (num_rois > 0) grad_rois.narrow(1, 1, 4).copy_(grad_box_per_channel.sum(1));
  }
  return std::make_tuple(grad_features, grad_rois);
}

}  // namespace maskrcnn_benchmark

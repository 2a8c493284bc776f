// Precise RoI Pooling on the CPU.
//
// A bin's integral is wy @ F @ wx^T with banded node weights (prroi_pool_math.h), the same for every
// channel, so the weights of all RoIs are computed once and the products run over blocks of kLanes channels
// at a time. Work is split over channel blocks with at::parallel_for; a task copies its block of the features
// into a channel-interleaved buffer [N, H, W, kLanes] (about a megabyte, so it stays in cache while every RoI
// reads it), in which each inner loop is a contiguous, vectorisable multiply-add over the block's channels,
// and accumulates its slice of the feature gradient in a buffer of the same layout (no atomics, no
// per-thread copies of the whole gradient). Per RoI and block:
//   forward:        G = wy @ F (one bin row at a time), out = G @ wx^T / area;
//   features grad:  the transposed products, dF += wy^T @ (g @ wx) / area;
//   box grad:       Lx = G @ (line taps)^T and Ly = (line taps) @ F @ wx^T, weighted by the jumps of g
//                   across each line, plus the area term from sum g * I (see prroi_pool_math.h).
// The inner loops are compiled for AVX-512, AVX2 and baseline x86-64 (vector_clones.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../prroi_pool.h"
#include "../prroi_pool_math.h"
#include "vector_clones.h"

namespace maskrcnn_benchmark {
namespace {

using prroi::RoiGeometry;

// Channels per block: one AVX-512 vector of float, two of double.
constexpr int64_t kLanes = 16;

// Banded weights of every RoI along one axis, in node indices relative to the RoI's window (the nodes on
// the map that any of its bins touches).
template <typename scalar_t>
struct AxisPlan {
  std::vector<int> window_first, window_count;  // [K]
  std::vector<int> bin_first, bin_count;        // [K * bins] nodes of each bin, relative to the window
  std::vector<int64_t> weight_begin;            // [K * bins] offsets into weights
  std::vector<scalar_t> weights;                // integral of each node's hat over the bin
  std::vector<int> line_first, line_count;      // [K * (bins + 1)] interpolation taps of each edge line
  std::vector<scalar_t> line_weight;            // [K * (bins + 1) * 2]

  void add_roi(double start, double bin, int64_t bins, int64_t size) {
    int lo = static_cast<int>(size), hi = -1;
    std::vector<prroi::NodeSpan> spans(bins);
    for (int64_t b = 0; b < bins; ++b) {
      spans[b] = prroi::node_span(start + b * bin, start + (b + 1) * bin, static_cast<int>(size));
      if (spans[b].count > 0) {
        lo = std::min(lo, spans[b].first);
        hi = std::max(hi, spans[b].first + spans[b].count - 1);
      }
    }
    const int first = hi >= lo ? lo : 0, count = hi >= lo ? hi - lo + 1 : 0;
    window_first.push_back(first);
    window_count.push_back(count);
    for (int64_t b = 0; b < bins; ++b) {
      bin_first.push_back(spans[b].first - first);
      bin_count.push_back(spans[b].count);
      weight_begin.push_back(static_cast<int64_t>(weights.size()));
      for (int t = 0; t < spans[b].count; ++t)
        weights.push_back(static_cast<scalar_t>(
            prroi::node_weight(start + b * bin, start + (b + 1) * bin, spans[b].first + t)));
    }
    // A tap off the window has zero weight or lies off the map (the window holds every on-map node
    // within one cell of the RoI), so it is dropped.
    for (int64_t b = 0; b <= bins; ++b) {
      const prroi::LineTaps taps = prroi::line_taps(start + b * bin, static_cast<int>(size));
      int kept = 0;
      scalar_t kept_weight[2] = {0, 0};
      int kept_first = 0;
      for (int t = 0; t < 2; ++t) {
        const int node = taps.node + t - first;
        if (node < 0 || node >= count) continue;
        if (kept == 0) kept_first = node;
        kept_weight[kept++] = static_cast<scalar_t>(taps.weight[t]);
      }
      line_first.push_back(kept_first);
      line_count.push_back(kept);
      line_weight.push_back(kept_weight[0]);
      line_weight.push_back(kept_weight[1]);
    }
  }
};

template <typename scalar_t>
struct RoiPlan {
  std::vector<RoiGeometry> geometry;  // [K]
  AxisPlan<scalar_t> x, y;
};

// rois [K, 5] as double, already checked by prroi_pool_check_roi_values (prroi_pool.h).
template <typename scalar_t>
RoiPlan<scalar_t> plan_rois(const double* rois, int64_t num_rois, int64_t height, int64_t width, int64_t pooled_h,
                            int64_t pooled_w, double spatial_scale) {
  RoiPlan<scalar_t> plan;
  plan.geometry.resize(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    const double* roi = rois + k * 5;
    const RoiGeometry g = prroi::roi_geometry(roi, spatial_scale, pooled_h, pooled_w);
    plan.geometry[k] = g;
    plan.x.add_roi(g.x0, g.bin_w, pooled_w, width);
    plan.y.add_roi(g.y0, g.bin_h, pooled_h, height);
  }
  return plan;
}

// One RoI's weights along one axis.
template <typename scalar_t>
struct AxisView {
  int window_first, window_count;
  const int *bin_first, *bin_count;
  const int64_t* weight_begin;
  const scalar_t* weights;
  const int *line_first, *line_count;
  const scalar_t* line_weight;

  AxisView(const AxisPlan<scalar_t>& plan, int64_t k, int64_t bins)
      : window_first(plan.window_first[k]),
        window_count(plan.window_count[k]),
        bin_first(plan.bin_first.data() + k * bins),
        bin_count(plan.bin_count.data() + k * bins),
        weight_begin(plan.weight_begin.data() + k * bins),
        weights(plan.weights.data()),
        line_first(plan.line_first.data() + k * (bins + 1)),
        line_count(plan.line_count.data() + k * (bins + 1)),
        line_weight(plan.line_weight.data() + k * (bins + 1) * 2) {}
};

// The kLanes channels of a block as one value. With GCC and Clang it is a vector type whose arithmetic is
// lowered to the widest vectors of the clone being compiled (one AVX-512 register of float); elsewhere a
// plain array with the same operators.
#if defined(__GNUC__)
typedef float FloatLanes __attribute__((vector_size(kLanes * sizeof(float)), aligned(sizeof(float))));
typedef double DoubleLanes __attribute__((vector_size(kLanes * sizeof(double)), aligned(sizeof(double))));
template <typename scalar_t>
struct LaneType;
template <>
struct LaneType<float> {
  using type = FloatLanes;
};
template <>
struct LaneType<double> {
  using type = DoubleLanes;
};
template <typename scalar_t>
using Lanes = typename LaneType<scalar_t>::type;
#else
template <typename scalar_t>
struct Lanes {
  scalar_t v[kLanes];
  Lanes& operator+=(const Lanes& o) {
    for (int64_t l = 0; l < kLanes; ++l) v[l] += o.v[l];
    return *this;
  }
  friend Lanes operator+(Lanes a, const Lanes& b) { return a += b; }
  friend Lanes operator-(Lanes a, const Lanes& b) {
    for (int64_t l = 0; l < kLanes; ++l) a.v[l] -= b.v[l];
    return a;
  }
  friend Lanes operator*(Lanes a, const Lanes& b) {
    for (int64_t l = 0; l < kLanes; ++l) a.v[l] *= b.v[l];
    return a;
  }
  friend Lanes operator*(scalar_t w, Lanes a) {
    for (int64_t l = 0; l < kLanes; ++l) a.v[l] *= w;
    return a;
  }
};
#endif

template <typename scalar_t>
inline Lanes<scalar_t> load_lanes(const scalar_t* src) {
  Lanes<scalar_t> value;
  std::memcpy(&value, src, sizeof(value));
  return value;
}

template <typename scalar_t>
inline void store_lanes(scalar_t* dst, const Lanes<scalar_t>& value) {
  std::memcpy(dst, &value, sizeof(value));
}

// dst[node] += w * src[node] for the `count` nodes of a row of a block.
template <typename scalar_t>
inline void add_scaled_row(scalar_t* dst, const scalar_t* src, scalar_t w, int64_t count) {
  for (int64_t i = 0; i < count * kLanes; i += kLanes)
    store_lanes(dst + i, load_lanes(dst + i) + w * load_lanes(src + i));
}

// sum over a bin's nodes of weight * row[node]: one bin of a row times wx^T (or one line's taps).
template <typename scalar_t>
inline Lanes<scalar_t> banded_dot(const scalar_t* row, const scalar_t* weights, int first, int count) {
  Lanes<scalar_t> total = {};
  for (int t = 0; t < count; ++t) total += weights[t] * load_lanes(row + (first + t) * kLanes);
  return total;
}

// row = sum over the `count` map rows from `first` of weights[t] * F[first + t][window], e.g. G[a] = wy[a] @ F.
template <typename scalar_t>
inline void weighted_rows(scalar_t* row, const scalar_t* plane, int64_t width, const AxisView<scalar_t>& x,
                          const scalar_t* weights, int first, int count) {
  std::fill(row, row + x.window_count * kLanes, scalar_t(0));
  for (int t = 0; t < count; ++t)
    add_scaled_row(row, plane + ((first + t) * width + x.window_first) * kLanes, weights[t], x.window_count);
}

// Forward of one RoI on one channel block: out[(a * PW + b) * kLanes + l] = mean of f over bin (a, b).
template <typename scalar_t>
PRROI_VECTOR_CLONES void pool_block(const scalar_t* plane, int64_t width, const AxisView<scalar_t>& x,
                                    const AxisView<scalar_t>& y, int64_t pooled_h, int64_t pooled_w,
                                    scalar_t inv_area, scalar_t* row, scalar_t* out) {
  for (int64_t a = 0; a < pooled_h; ++a) {
    weighted_rows(row, plane, width, x, y.weights + y.weight_begin[a], y.window_first + y.bin_first[a],
                  y.bin_count[a]);
    for (int64_t b = 0; b < pooled_w; ++b)
      store_lanes(out + (a * pooled_w + b) * kLanes,
                  inv_area * banded_dot(row, x.weights + x.weight_begin[b], x.bin_first[b], x.bin_count[b]));
  }
}

// Box-gradient sums of one RoI on one channel block, per lane (see prroi_pool_math.h), written to
//   jump_x[b] = sum_a Lx[a][b] (g[a][b-1] - g[a][b]),  jump_y[a] = sum_b Ly[a][b] (g[a-1][b] - g[a][b]),
//   weighted = sum_{a,b} g[a][b] I[a][b],
// and/or the features gradient d_plane += wy^T @ (g @ wx) / area; g beyond the RoI's bins is zero.
// Both go through the rows T[a] = g[a] @ wx (node space): the features gradient spreads them with wy, and
// the box sums need only inner products with them, Ly[a] . (g[a-1] - g[a]) = Hy[a] . (T[a-1] - T[a]) with
// Hy[a] the map interpolated along line y_a, and sum_b g[a][b] I[a][b] = G[a] . T[a] with G[a] = wy[a] @ F.
template <typename scalar_t>
PRROI_VECTOR_CLONES void backward_block(const scalar_t* plane, scalar_t* d_plane, int64_t width,
                                        const AxisView<scalar_t>& x, const AxisView<scalar_t>& y, int64_t pooled_h,
                                        int64_t pooled_w, scalar_t inv_area, const scalar_t* grad, scalar_t* rows,
                                        scalar_t* jump_x, scalar_t* jump_y, scalar_t* weighted) {
  using V = Lanes<scalar_t>;
  const int64_t row_size = x.window_count * kLanes;
  scalar_t* previous = rows;                // T[a - 1]
  scalar_t* current = rows + row_size;      // T[a]
  scalar_t* map_row = rows + 2 * row_size;  // G[a] or Hy[a]
  const bool want_box = plane != nullptr;
  std::fill(previous, previous + row_size, scalar_t(0));
  V weighted_sum = {};
  if (want_box) std::fill(jump_x, jump_x + (pooled_w + 1) * kLanes, scalar_t(0));
  for (int64_t a = 0; a <= pooled_h; ++a) {
    std::fill(current, current + row_size, scalar_t(0));
    if (a < pooled_h) {
      for (int64_t b = 0; b < pooled_w; ++b) {
        const V g = load_lanes(grad + (a * pooled_w + b) * kLanes);
        const scalar_t* weights = x.weights + x.weight_begin[b];
        scalar_t* node = current + x.bin_first[b] * kLanes;
        for (int t = 0; t < x.bin_count[b]; ++t)
          store_lanes(node + t * kLanes, load_lanes(node + t * kLanes) + weights[t] * g);
      }
    }
    if (want_box) {
      weighted_rows(map_row, plane, width, x, y.line_weight + 2 * a, y.window_first + y.line_first[a],
                    y.line_count[a]);
      V jump = {};
      for (int64_t i = 0; i < row_size; i += kLanes)
        jump += prroi::line_term(load_lanes(map_row + i), load_lanes(previous + i), load_lanes(current + i));
      store_lanes(jump_y + a * kLanes, jump);
    }
    if (a < pooled_h) {
      const scalar_t* weights = y.weights + y.weight_begin[a];
      const int first = y.window_first + y.bin_first[a];
      if (want_box) {
        weighted_rows(map_row, plane, width, x, weights, first, y.bin_count[a]);
        for (int64_t i = 0; i < row_size; i += kLanes) weighted_sum += load_lanes(map_row + i) * load_lanes(current + i);
        V before = {};
        for (int64_t b = 0; b <= pooled_w; ++b) {
          const V after = b < pooled_w ? load_lanes(grad + (a * pooled_w + b) * kLanes) : V{};
          const V line = banded_dot(map_row, x.line_weight + 2 * b, x.line_first[b], x.line_count[b]);
          store_lanes(jump_x + b * kLanes, load_lanes(jump_x + b * kLanes) + prroi::line_term(line, before, after));
          before = after;
        }
      }
      if (d_plane != nullptr)
        for (int t = 0; t < y.bin_count[a]; ++t)
          add_scaled_row(d_plane + ((first + t) * width + x.window_first) * kLanes, current, weights[t] * inv_area,
                         x.window_count);
    }
    std::swap(previous, current);
  }
  if (want_box) store_lanes(weighted, weighted_sum);
}

// dst[l * bins + i] = src[i * kLanes + l] for the block's real lanes: one RoI's block of output channels.
template <typename dst_t, typename src_t>
PRROI_VECTOR_CLONES void store_channel_major(dst_t* __restrict__ dst, const src_t* __restrict__ src, int64_t bins,
                                             int64_t lanes) {
  for (int64_t l = 0; l < lanes; ++l)
    for (int64_t i = 0; i < bins; ++i) dst[l * bins + i] = static_cast<dst_t>(src[i * kLanes + l]);
}

// The inverse, from `lanes` channels of rows x cols values read through their strides (the upstream gradient
// of one RoI, or one image of the features); lanes past `lanes` are zero.
template <typename dst_t, typename src_t>
PRROI_VECTOR_CLONES void load_lane_major(dst_t* __restrict__ dst, const src_t* __restrict__ src,
                                         int64_t stride_channel, int64_t stride_row, int64_t stride_col, int64_t rows,
                                         int64_t cols, int64_t lanes) {
  const int64_t count = rows * cols;
  if (lanes < kLanes) std::fill(dst, dst + count * kLanes, dst_t(0));
  for (int64_t l = 0; l < lanes; ++l) {
    const src_t* channel = src + l * stride_channel;
    if (stride_col == 1 && stride_row == cols) {
      for (int64_t i = 0; i < count; ++i) dst[i * kLanes + l] = channel[i];
    } else {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[(r * cols + c) * kLanes + l] = channel[r * stride_row + c * stride_col];
    }
  }
}

// Lanes of channel block `block` that hold real channels.
inline int64_t lanes_in(int64_t block, int64_t channels) { return std::min(kLanes, channels - block * kLanes); }

// Channel block `block` of every image of features [N, C, H, W] (any strides) -> blocked [N, H, W, kLanes].
template <typename dst_t, typename src_t>
void pack_block(const src_t* features, at::IntArrayRef sizes, at::IntArrayRef strides, int64_t block,
                dst_t* blocked) {
  const int64_t plane = sizes[2] * sizes[3] * kLanes, lanes = lanes_in(block, sizes[1]);
  for (int64_t n = 0; n < sizes[0]; ++n)
    load_lane_major(blocked + n * plane, features + n * strides[0] + block * kLanes * strides[1], strides[1],
                    strides[2], strides[3], sizes[2], sizes[3], lanes);
}

// The inverse into a contiguous [N, C, H, W] tensor, real lanes only.
template <typename dst_t, typename src_t>
void unpack_block(const src_t* blocked, int64_t batch_size, int64_t channels, int64_t height, int64_t width,
                  int64_t block, dst_t* features) {
  const int64_t lanes = lanes_in(block, channels);
  for (int64_t n = 0; n < batch_size; ++n)
    store_channel_major(features + (n * channels + block * kLanes) * height * width,
                        blocked + n * height * width * kLanes, height * width, lanes);
}

// Channel blocks per parallel task: small problems run inline, since waking threads costs more than the work.
int64_t blocks_per_task(int64_t num_rois, int64_t blocks, int64_t pooled_h, int64_t pooled_w) {
  const int64_t work = num_rois * blocks * kLanes * pooled_h * pooled_w;
  return work < 65536 ? blocks : 1;
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& features, const RoiPlan<scalar_t>& plan, int64_t pooled_h, int64_t pooled_w,
                    scalar_t* output) {
  const int64_t batch_size = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3);
  const int64_t num_rois = static_cast<int64_t>(plan.geometry.size());
  const int64_t blocks = (channels + kLanes - 1) / kLanes, bins = pooled_h * pooled_w;
  const int64_t max_window = *std::max_element(plan.x.window_count.begin(), plan.x.window_count.end());
  at::parallel_for(0, blocks, blocks_per_task(num_rois, blocks, pooled_h, pooled_w), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> row(std::max<int64_t>(max_window, 1) * kLanes), out(bins * kLanes);
    std::vector<scalar_t> blocked(batch_size * height * width * kLanes);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t lanes = lanes_in(block, channels);
      pack_block(features.data_ptr<scalar_t>(), features.sizes(), features.strides(), block, blocked.data());
      for (int64_t k = 0; k < num_rois; ++k) {
        const RoiGeometry& g = plan.geometry[k];
        scalar_t* dst = output + (k * channels + block * kLanes) * bins;
        if (!(g.bin_area > 0.0)) {
          std::fill(dst, dst + lanes * bins, scalar_t(0));
          continue;
        }
        const scalar_t* plane = blocked.data() + g.batch_index * height * width * kLanes;
        pool_block(plane, width, AxisView<scalar_t>(plan.x, k, pooled_w), AxisView<scalar_t>(plan.y, k, pooled_h),
                   pooled_h, pooled_w, static_cast<scalar_t>(1.0 / g.bin_area), row.data(), out.data());
        store_channel_major(dst, out.data(), bins, lanes);
      }
    }
  });
}

// scalar_t: the tensors' type; acc_t: the type the products run in (double for the RoI gradient, whose
// edge-line terms largely cancel, so that float32 inputs get it to float64 accuracy).
template <typename scalar_t, typename acc_t>
void backward_kernel(const at::Tensor& grad_output, const at::Tensor& features, const RoiPlan<acc_t>& plan,
                     int64_t pooled_h, int64_t pooled_w, double spatial_scale, scalar_t* grad_features,
                     double* grad_box_per_block) {
  const int64_t batch_size = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3), plane_size = height * width * kLanes;
  const int64_t num_rois = static_cast<int64_t>(plan.geometry.size());
  const int64_t blocks = (channels + kLanes - 1) / kLanes, bins = pooled_h * pooled_w;
  const int64_t max_window = *std::max_element(plan.x.window_count.begin(), plan.x.window_count.end());
  // grad_output is read through its strides: the gradient of a sum is one value expanded, and copying it
  // to a contiguous tensor would cost as much as the forward output.
  const scalar_t* grad_data = grad_output.data_ptr<scalar_t>();
  const int64_t stride_k = grad_output.stride(0), stride_c = grad_output.stride(1);
  const int64_t stride_a = grad_output.stride(2), stride_b = grad_output.stride(3);
  at::parallel_for(0, blocks, blocks_per_task(num_rois, blocks, pooled_h, pooled_w), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> rows(3 * std::max<int64_t>(max_window, 1) * kLanes), grad(bins * kLanes);
    std::vector<acc_t> jump_x((pooled_w + 1) * kLanes), jump_y((pooled_h + 1) * kLanes), weighted(kLanes);
    std::vector<acc_t> blocked(grad_box_per_block != nullptr ? batch_size * plane_size : 0);
    std::vector<acc_t> d_blocked(grad_features != nullptr ? batch_size * plane_size : 0);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t lanes = lanes_in(block, channels);
      if (grad_box_per_block != nullptr)
        pack_block(features.data_ptr<scalar_t>(), features.sizes(), features.strides(), block, blocked.data());
      std::fill(d_blocked.begin(), d_blocked.end(), acc_t(0));
      for (int64_t k = 0; k < num_rois; ++k) {
        const RoiGeometry& g = plan.geometry[k];
        if (!(g.bin_area > 0.0)) continue;  // zero-area bins are constant 0: no gradient
        const AxisView<acc_t> x(plan.x, k, pooled_w), y(plan.y, k, pooled_h);
        load_lane_major(grad.data(), grad_data + k * stride_k + block * kLanes * stride_c, stride_c, stride_a,
                        stride_b, pooled_h, pooled_w, lanes);
        const int64_t plane_offset = g.batch_index * plane_size;
        backward_block(grad_box_per_block != nullptr ? blocked.data() + plane_offset : nullptr,
                       grad_features != nullptr ? d_blocked.data() + plane_offset : nullptr, width, x, y, pooled_h, pooled_w,
                       static_cast<acc_t>(1.0 / g.bin_area), grad.data(), rows.data(), jump_x.data(),
                       jump_y.data(), weighted.data());
        if (grad_box_per_block != nullptr) {
          // Lanes are summed in double: the jumps of neighbouring lines largely cancel in the box gradient.
          double box[4] = {0.0, 0.0, 0.0, 0.0};
          const auto lane_sum = [lanes](const acc_t* values) {
            double total = 0.0;
            for (int64_t l = 0; l < lanes; ++l) total += static_cast<double>(values[l]);
            return total;
          };
          for (int64_t b = 0; b <= pooled_w; ++b)
            prroi::chain_x_line(lane_sum(jump_x.data() + b * kLanes) / g.bin_area, static_cast<int>(b),
                                static_cast<int>(pooled_w), spatial_scale, box);
          for (int64_t a = 0; a <= pooled_h; ++a)
            prroi::chain_y_line(lane_sum(jump_y.data() + a * kLanes) / g.bin_area, static_cast<int>(a),
                                static_cast<int>(pooled_h), spatial_scale, box);
          prroi::chain_bin_area(-lane_sum(weighted.data()) / (g.bin_area * g.bin_area), g,
                                static_cast<int>(pooled_h), static_cast<int>(pooled_w), spatial_scale, box);
          double* dst = grad_box_per_block + (k * blocks + block) * 4;
          for (int i = 0; i < 4; ++i) dst[i] = box[i];
        }
      }
      if (grad_features != nullptr)
        unpack_block(d_blocked.data(), batch_size, channels, height, width, block, grad_features);
    }
  });
}

}  // namespace

at::Tensor prroi_pool_forward_cpu(const at::Tensor& features_in, const at::Tensor& rois_in, int64_t pooled_height,
                                  int64_t pooled_width, double spatial_scale) {
  const at::Tensor rois = rois_in.to(at::kDouble).contiguous();
  const int64_t channels = features_in.size(1);
  const int64_t height = features_in.size(2), width = features_in.size(3), num_rois = rois.size(0);
  if (num_rois == 0 || channels == 0 || height == 0 || width == 0)
    return at::zeros({num_rois, channels, pooled_height, pooled_width}, features_in.options());
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, features_in.options());
  AT_DISPATCH_FLOATING_TYPES(features_in.scalar_type(), "prroi_pool_forward_cpu", [&] {
    const RoiPlan<scalar_t> plan =
        plan_rois<scalar_t>(rois.data_ptr<double>(), num_rois, height, width, pooled_height, pooled_width, spatial_scale);
    forward_kernel(features_in, plan, pooled_height, pooled_width, output.data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor> prroi_pool_backward_cpu(const at::Tensor& grad_output_in,
                                                           const at::Tensor& features_in, const at::Tensor& rois_in,
                                                           int64_t pooled_height, int64_t pooled_width,
                                                           double spatial_scale, bool features_need_grad,
                                                           bool rois_need_grad) {
  const at::Tensor rois = rois_in.to(at::kDouble).contiguous();
  const at::Tensor grad_output = grad_output_in.to(features_in.scalar_type());
  const int64_t channels = features_in.size(1);
  const int64_t height = features_in.size(2), width = features_in.size(3), num_rois = rois.size(0);
  const int64_t blocks = (channels + kLanes - 1) / kLanes;
  at::Tensor grad_features = at::empty({0}, features_in.options());
  at::Tensor grad_box_per_block = rois_need_grad ? at::zeros({num_rois, blocks, 4}, rois.options())
                                                 : at::empty({0}, rois.options());
  const bool any_work = num_rois > 0 && channels > 0 && height > 0 && width > 0;
  if (features_need_grad && !any_work) grad_features = at::zeros_like(features_in, at::MemoryFormat::Contiguous);
  if (any_work && (features_need_grad || rois_need_grad)) {
    AT_DISPATCH_FLOATING_TYPES(features_in.scalar_type(), "prroi_pool_backward_cpu", [&] {
      if (features_need_grad) grad_features = at::empty(features_in.sizes(), features_in.options());
      const auto run = [&](auto acc_zero) {
        using acc_t = decltype(acc_zero);
        const RoiPlan<acc_t> plan = plan_rois<acc_t>(rois.data_ptr<double>(), num_rois, height, width, pooled_height,
                                                     pooled_width, spatial_scale);
        backward_kernel<scalar_t, acc_t>(grad_output, features_in, plan, pooled_height, pooled_width, spatial_scale,
                                         features_need_grad ? grad_features.data_ptr<scalar_t>() : nullptr,
                                         rois_need_grad ? grad_box_per_block.data_ptr<double>() : nullptr);
      };
      if (rois_need_grad)
        run(double(0));
      else
        run(scalar_t(0));
    });
  }
  at::Tensor grad_rois = at::empty({0}, rois_in.options());
  if (rois_need_grad) {
    grad_rois = at::zeros({num_rois, 5}, rois_in.options());
    if (num_rois > 0) grad_rois.narrow(1, 1, 4).copy_(grad_box_per_block.sum(1));
  }
  return std::make_tuple(grad_features, grad_rois);
}

}  // namespace maskrcnn_benchmark

// Closed-form maths of Precise RoI Pooling shared by the CPU and the CUDA kernel.
//
// The feature map f is the bilinear interpolant of the grid F (node (q, p) at y = q, x = p, zero outside
// the map), i.e. f(x, y) = sum_{q,p} hat(y - q) hat(x - p) F[q][p] with hat(t) = max(0, 1 - |t|).
// The interpolant is separable, so the integral of f over a bin [x_b, x_{b+1}] x [y_a, y_{a+1}] is
//   I[a][b] = sum_{q,p} wy[a][q] F[q][p] wx[b][p],   wx[b][p] = R(x_{b+1} - p) - R(x_b - p),
// with R(t) the integral of hat up to t: two small banded products (a bin touches about bin size + 2 nodes
// per axis), exact for any bin and free of the cancellation a summed-area table suffers on small bins.
//
// Moving the bin edge line x = x_b changes I by the line integral of f along it,
//   Lx[a][b] = integral over [y_a, y_{a+1}] of f(x_b, y) dy = sum_{q,p} wy[a][q] F[q][p] hat(x_b - p),
// so the coordinate gradient needs the banded product with the two interpolation taps of each line
// instead of the bin weights (likewise Ly along y), plus the change of the bins' area.
#pragma once

#include <c10/macros/Macros.h>
#include <math.h>

namespace maskrcnn_benchmark {
namespace prroi {

// Integral of hat(s) = max(0, 1 - |s|) over s in (-inf, t]: a C1 piecewise quadratic from 0 to 1.
C10_HOST_DEVICE inline double integrated_hat(double t) {
  if (t <= -1.0) return 0.0;
  if (t >= 1.0) return 1.0;
  return t <= 0.0 ? 0.5 * (t + 1.0) * (t + 1.0) : 1.0 - 0.5 * (1.0 - t) * (1.0 - t);
}

// Beyond [-2, size + 1] an axis with `size` nodes holds only zero padding; clamping there keeps floor()
// within int range for far-away boxes and changes no weight of a node on the map.
C10_HOST_DEVICE inline double clamp_to_axis(double coord, int size) {
  return coord < -2.0 ? -2.0 : (coord > size + 1.0 ? size + 1.0 : coord);
}

// The nodes on the map (0 .. size - 1) whose hat overlaps [lo, hi]: first, first + 1, ..., first + count - 1.
struct NodeSpan {
  int first, count;
};

C10_HOST_DEVICE inline NodeSpan node_span(double lo, double hi, int size) {
  int first = static_cast<int>(floor(clamp_to_axis(lo, size)));
  int last = static_cast<int>(ceil(clamp_to_axis(hi, size)));
  first = first < 0 ? 0 : first;
  last = last > size - 1 ? size - 1 : last;
  NodeSpan span;
  span.first = first;
  span.count = last >= first ? last - first + 1 : 0;
  return span;
}

// Weight of node `node` in the integral over [lo, hi] along one axis: the integral of its hat across it.
C10_HOST_DEVICE inline double node_weight(double lo, double hi, int node) {
  return integrated_hat(hi - node) - integrated_hat(lo - node);
}

// Interpolation taps of f at `coord` along one axis: f = weight[0] F[node] + weight[1] F[node + 1], where
// a node off the map (outside 0 .. size - 1) reads zero padding and must be skipped by the caller.
struct LineTaps {
  int node;
  double weight[2];
};

C10_HOST_DEVICE inline LineTaps line_taps(double coord, int size) {
  const double clamped = clamp_to_axis(coord, size);
  const double cell = floor(clamped);
  LineTaps taps;
  taps.node = static_cast<int>(cell);
  taps.weight[1] = clamped - cell;
  taps.weight[0] = 1.0 - taps.weight[1];
  return taps;
}

// Geometry of one RoI in feature-map units: bin edge k along x is x0 + k * bin_w. Inverted boxes are
// given zero width or height, so their bins have zero area, output 0 and pass no gradient.
struct RoiGeometry {
  int batch_index;
  double x0, y0;        // top-left corner
  double bin_w, bin_h;  // bin size
  double bin_area;
};

template <typename scalar_t>
C10_HOST_DEVICE inline RoiGeometry roi_geometry(const scalar_t* roi, double spatial_scale, int pooled_h,
                                                int pooled_w) {
  RoiGeometry g;
  g.batch_index = static_cast<int>(static_cast<double>(roi[0]));
  g.x0 = static_cast<double>(roi[1]) * spatial_scale;
  g.y0 = static_cast<double>(roi[2]) * spatial_scale;
  const double w = static_cast<double>(roi[3]) * spatial_scale - g.x0;
  const double h = static_cast<double>(roi[4]) * spatial_scale - g.y0;
  g.bin_w = (w > 0.0 ? w : 0.0) / pooled_w;
  g.bin_h = (h > 0.0 ? h : 0.0) / pooled_h;
  g.bin_area = g.bin_w * g.bin_h;
  return g;
}

// The loss L = sum_{a,b} g[a][b] I[a][b] / area (g the upstream gradient, zero beyond the RoI's bins) changes
// with the edge line x_b by sum_a Lx[a][b] (g[a][b-1] - g[a][b]) / area: the line bounds bin b - 1 on the
// right and bin b on the left. This is that line's term for one bin row (and likewise along y).
template <typename T>
C10_HOST_DEVICE inline T line_term(T line_integral, T grad_before, T grad_after) {
  return line_integral * (grad_before - grad_after);
}

// Chains d(loss)/d(x_b) of edge line b, x_b = x0 + b (x1 - x0) / pooled_w in feature-map units, to the RoI's
// image coordinates; adds into grad_box[0..3] = (x0, y0, x1, y1).
C10_HOST_DEVICE inline void chain_x_line(double d_line, int b, int pooled_w, double spatial_scale,
                                         double grad_box[4]) {
  const double along = static_cast<double>(b) / pooled_w;
  grad_box[0] += spatial_scale * d_line * (1.0 - along);
  grad_box[2] += spatial_scale * d_line * along;
}

C10_HOST_DEVICE inline void chain_y_line(double d_line, int a, int pooled_h, double spatial_scale,
                                         double grad_box[4]) {
  const double along = static_cast<double>(a) / pooled_h;
  grad_box[1] += spatial_scale * d_line * (1.0 - along);
  grad_box[3] += spatial_scale * d_line * along;
}

// Chains d(loss)/d(bin area), with bin area = (x1 - x0)(y1 - y0) / (pooled_w pooled_h), to the RoI's
// image coordinates. For L above, d(loss)/d(area) = -sum_{a,b} g[a][b] I[a][b] / area^2.
C10_HOST_DEVICE inline void chain_bin_area(double d_area, const RoiGeometry& g, int pooled_h, int pooled_w,
                                           double spatial_scale, double grad_box[4]) {
  const double along_x = spatial_scale * d_area * g.bin_h / pooled_w;
  const double along_y = spatial_scale * d_area * g.bin_w / pooled_h;
  grad_box[0] -= along_x;
  grad_box[2] += along_x;
  grad_box[1] -= along_y;
  grad_box[3] += along_y;
}

}  // namespace prroi
}  // namespace maskrcnn_benchmark

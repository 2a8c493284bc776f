// Closed-form maths of Precise RoI Pooling shared by the CPU and the CUDA kernel.
//
// The feature map f is the bilinear interpolant of the grid F (node (q, p) at y = q, x = p, zero outside
// the map), i.e. f(x, y) = sum_{q,p} hat(y - q) hat(x - p) F[q][p] with hat(t) = max(0, 1 - |t|).
// Its integral from (-inf, -inf) to (x, y) is S(x, y) = sum_{q,p} R(y - q) R(x - p) F[q][p] with
// R(t) = integral of hat up to t. Summing by parts turns this into a 3x3 stencil on the summed-area
// table P[q][p] = sum_{q' <= q, p' <= p} F[q'][p'], whose weights are the quadratic B-spline weights of
// the fractional coordinate (and their derivatives for dS/dx, dS/dy). A bin's integral is then the
// usual four-corner difference of S, exact for any bin, with no sampling; dS/dx at a corner is the
// line integral of f along the vertical line through it, which is what the coordinate gradient needs.
//
// The table is stored padded as T[j][i] = P[j - 1][i - 1] (row and column 0 are zero), so T has
// (height + 1) x (width + 1) entries and an index clamped into [0, size] gives the right prefix sum
// on both sides of the map. Tables and weights are double: S grows with the map while a bin's integral
// is a difference of four S values, so float tables would lose the small bins to cancellation.
#pragma once

#include <c10/macros/Macros.h>
#include <math.h>

namespace maskrcnn_benchmark {
namespace prroi {

// The three table entries along one axis that S (and dS/dcoord) at one coordinate depends on.
struct AxisTaps {
  int index[3];      // indices into the padded summed-area table, in [0, size]
  double weight[3];  // quadratic B-spline weights: S = sum weight * table
  double slope[3];   // their derivatives: dS/dcoord = sum slope * table
};

// Taps for coordinate `coord` (feature-map units) on an axis with `size` nodes.
C10_HOST_DEVICE inline AxisTaps axis_taps(double coord, int size) {
  // S is flat in coord outside [-1, size]; clamping there keeps value and derivative exact and keeps
  // floor() within int range for far-away boxes.
  if (coord < -2.0) coord = -2.0;
  if (coord > size + 1.0) coord = size + 1.0;
  const double cell = floor(coord);
  const double u = coord - cell;
  const int first = static_cast<int>(cell);  // table index of the node left of the cell, minus one
  AxisTaps taps;
  for (int k = 0; k < 3; ++k) {
    int index = first + k;
    taps.index[k] = index < 0 ? 0 : (index > size ? size : index);
  }
  taps.weight[0] = 0.5 * (1.0 - u) * (1.0 - u);
  taps.weight[1] = 0.5 + u - u * u;
  taps.weight[2] = 0.5 * u * u;
  taps.slope[0] = u - 1.0;
  taps.slope[1] = 1.0 - 2.0 * u;
  taps.slope[2] = u;
  return taps;
}

// S at one point from the padded table (row stride `stride`).
C10_HOST_DEVICE inline double integral_at(const double* table, int stride, const AxisTaps& ty, const AxisTaps& tx) {
  double total = 0.0;
  for (int r = 0; r < 3; ++r) {
    const double* row = table + static_cast<long>(ty.index[r]) * stride;
    total += ty.weight[r] * (tx.weight[0] * row[tx.index[0]] + tx.weight[1] * row[tx.index[1]] +
                             tx.weight[2] * row[tx.index[2]]);
  }
  return total;
}

// S, dS/dx and dS/dy at one point.
C10_HOST_DEVICE inline void integral_and_slopes_at(const double* table, int stride, const AxisTaps& ty,
                                                   const AxisTaps& tx, double* value, double* d_dx, double* d_dy) {
  double s = 0.0, sx = 0.0, sy = 0.0;
  for (int r = 0; r < 3; ++r) {
    const double* row = table + static_cast<long>(ty.index[r]) * stride;
    const double t0 = row[tx.index[0]], t1 = row[tx.index[1]], t2 = row[tx.index[2]];
    const double along_x = tx.weight[0] * t0 + tx.weight[1] * t1 + tx.weight[2] * t2;
    const double slope_x = tx.slope[0] * t0 + tx.slope[1] * t1 + tx.slope[2] * t2;
    s += ty.weight[r] * along_x;
    sx += ty.weight[r] * slope_x;
    sy += ty.slope[r] * along_x;
  }
  *value = s;
  *d_dx = sx;
  *d_dy = sy;
}

// Adjoint of integral_at: spreads d(loss)/dS at one point onto the table's gradient.
template <typename AddFn>
C10_HOST_DEVICE inline void scatter_integral_grad(double grad, const AxisTaps& ty, const AxisTaps& tx, AddFn add) {
  for (int r = 0; r < 3; ++r) {
    const double g = grad * ty.weight[r];
    for (int s = 0; s < 3; ++s) add(ty.index[r], tx.index[s], g * tx.weight[s]);
  }
}

// Geometry of one RoI in feature-map units. Inverted boxes are given zero width or height, so their
// bins have zero area, output 0 and pass no gradient.
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

// Mean of f over a bin from S at its corners (a = top-left, b = top-right, c = bottom-left, d = bottom-right).
C10_HOST_DEVICE inline double bin_mean(double area, double s_a, double s_b, double s_c, double s_d) {
  return area > 0.0 ? (s_d - s_b - s_c + s_a) / area : 0.0;
}

// Gradient of a loss through one bin's mean to the bin's four edges, given the upstream gradient
// `grad` of that output and S, dS/dx, dS/dy at the corners (order as in bin_mean). Each edge's
// derivative is (line integral along the edge - mean * edge length) / area, signed outward.
struct EdgeGrad {
  double left, right, top, bottom;
};

C10_HOST_DEVICE inline EdgeGrad bin_edge_grad(double grad, const RoiGeometry& g, const double s[4],
                                              const double sx[4], const double sy[4]) {
  EdgeGrad e = {0.0, 0.0, 0.0, 0.0};
  if (!(g.bin_area > 0.0)) return e;
  const double mean = (s[3] - s[1] - s[2] + s[0]) / g.bin_area;
  const double scale = grad / g.bin_area;
  e.right = scale * ((sx[3] - sx[1]) - mean * g.bin_h);
  e.left = -scale * ((sx[2] - sx[0]) - mean * g.bin_h);
  e.bottom = scale * ((sy[3] - sy[2]) - mean * g.bin_w);
  e.top = -scale * ((sy[1] - sy[0]) - mean * g.bin_w);
  return e;
}

// Chains edge gradients of bin (ph, pw) to the RoI's image coordinates: edge x_k = x0 + k (x1 - x0) / PW,
// in feature-map units, i.e. times spatial_scale in image units. Adds into grad_box[0..3] = (x0, y0, x1, y1).
C10_HOST_DEVICE inline void chain_edges_to_box(const EdgeGrad& e, int ph, int pw, int pooled_h, int pooled_w,
                                               double spatial_scale, double grad_box[4]) {
  const double left = static_cast<double>(pw) / pooled_w, right = static_cast<double>(pw + 1) / pooled_w;
  const double top = static_cast<double>(ph) / pooled_h, bottom = static_cast<double>(ph + 1) / pooled_h;
  grad_box[0] += spatial_scale * (e.left * (1.0 - left) + e.right * (1.0 - right));
  grad_box[2] += spatial_scale * (e.left * left + e.right * right);
  grad_box[1] += spatial_scale * (e.top * (1.0 - top) + e.bottom * (1.0 - bottom));
  grad_box[3] += spatial_scale * (e.top * top + e.bottom * bottom);
}

}  // namespace prroi
}  // namespace maskrcnn_benchmark

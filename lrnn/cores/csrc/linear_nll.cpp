// CPU kernels for LinearNLL (lrnn/rnnlm.py), the summed cross-entropy of the decoder's logits [N, V]: the softmax
// and its gradient as one pass per row over the logits buffer, in place, where the torch ops take five passes over
// the whole [N, V] buffer (16 MB at PTB's 400 x 10k) going forward and two going back. Rows are split over torch's
// threads; a row's arithmetic does not depend on the split. Built with step_weight_lstm.cpp (lrnn/cores/_native.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "fast_exp.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

namespace {

using at::Tensor;

constexpr int kLanes = 16;  // independent partial maxima / sums, so that the row loops vectorise

inline float exp_(float x) { return lrnn_native::exp_f(x); }
inline double exp_(double x) { return std::exp(x); }

template <typename T>
T row_max(const T* __restrict p, int64_t V) {
  T m[kLanes];
  std::fill(m, m + kLanes, p[0]);
  int64_t j = 0;
  for (; j + kLanes <= V; j += kLanes)
    for (int k = 0; k < kLanes; ++k) m[k] = p[j + k] > m[k] ? p[j + k] : m[k];
  for (; j < V; ++j) m[0] = p[j] > m[0] ? p[j] : m[0];
  return *std::max_element(m, m + kLanes);
}

// p <- exp(p - top) over a row; returns the row's sum.
template <typename T>
T exp_sum(T* __restrict p, int64_t V, T top) {
  T s[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= V; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const T e = exp_(p[j + k] - top);
      p[j + k] = e;
      s[k] += e;
    }
  for (; j < V; ++j) {
    const T e = exp_(p[j] - top);
    p[j] = e;
    s[0] += e;
  }
  T total = 0;
  for (int k = 0; k < kLanes; ++k) total += s[k];
  return total;
}

// probs [N, V] holds the logits; in place it gets exp(logit - row max). Returns (nll [N]: log(sum) + max - the
// target's logit, 0 where the target is ignore_index; total [N]: the row sums).
std::tuple<Tensor, Tensor> forward(Tensor probs, const Tensor& targets, int64_t ignore_index) {
  TORCH_CHECK(probs.dim() == 2 && probs.is_contiguous(), "probs must be a contiguous [N, V] tensor");
  const int64_t N = probs.size(0), V = probs.size(1);
  const Tensor tgt = targets.contiguous();
  auto nll = at::empty({N}, probs.options()), total = at::empty({N}, probs.options());
  const int64_t* y = tgt.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "lrnn_linear_nll_forward", [&] {
    scalar_t *p = probs.data_ptr<scalar_t>(), *out = nll.data_ptr<scalar_t>(), *tot = total.data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* row = p + r * V;
        const bool valid = y[r] != ignore_index;
        TORCH_CHECK(!valid || (y[r] >= 0 && y[r] < V), "target ", y[r], " is out of bounds for ", V, " classes");
        const scalar_t picked = valid ? row[y[r]] : 0, top = row_max(row, V);
        tot[r] = exp_sum(row, V, top);
        out[r] = valid ? std::log(tot[r]) + top - picked : 0;
      }
    });
  });
  return {nll, total};
}

// In place: probs (exp(logit - max) from forward) <- grad * (softmax - one_hot(target)); rows whose target is
// ignore_index get 0. grad: the 0-dim gradient of the summed NLL (a CPU tensor: read here, no Python .item()).
void backward(Tensor probs, const Tensor& total, const Tensor& targets, const Tensor& grad, int64_t ignore_index) {
  const int64_t N = probs.size(0), V = probs.size(1);
  const Tensor tgt = targets.contiguous();
  const int64_t* y = tgt.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "lrnn_linear_nll_backward", [&] {
    scalar_t* p = probs.data_ptr<scalar_t>();
    const scalar_t* tot = total.data_ptr<scalar_t>();
    const scalar_t g = grad.to(probs.scalar_type()).item<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* __restrict row = p + r * V;
        const bool valid = y[r] != ignore_index;
        const scalar_t scale = valid ? g / tot[r] : 0;
        for (int64_t j = 0; j < V; ++j) row[j] *= scale;
        if (valid) row[y[r]] -= g;
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lrnn, m) {
  m.def("linear_nll_forward(Tensor(a!) probs, Tensor targets, int ignore_index) -> (Tensor, Tensor)");
  m.def(
      "linear_nll_backward(Tensor(a!) probs, Tensor total, Tensor targets, Tensor grad, int ignore_index) -> ()");
}

TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("linear_nll_forward", forward);
  m.impl("linear_nll_backward", backward);
}

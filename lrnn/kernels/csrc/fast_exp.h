// Shared by lrnn's CPU kernels (step_weight_lstm.cpp, linear_nll.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lrnn_native {

// e^x for float, branch-free so that the loops below vectorise (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2,
// degree-6 polynomial for e^r). Inputs are clamped to [-87, 88], where e^x is a normal float.
inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace lrnn_native

// Dense attention through the installed liteattn on the CPU, checked against a naive loop.
#include <cmath>
#include <cstdio>
#include <vector>

#include <liteattn/liteattn.hpp>

int main() {
  constexpr int B = 1, L = 37, H = 2, D = 16;
  std::vector<float> q(B * L * H * D), k(q.size()), v(q.size()), out(q.size()), lse(B * H * L);
  for (std::size_t i = 0; i < q.size(); ++i) {
    q[i] = std::sin(0.37f * float(i));
    k[i] = std::cos(0.11f * float(i));
    v[i] = std::sin(0.05f * float(i) + 1.0f);
  }
  using liteattn::DType;
  const liteattn::Device cpu{};
  liteattn::AttentionArgs args;
  args.q = liteattn::TensorView::contiguous(q.data(), DType::f32, cpu, {B, L, H, D});
  args.k = liteattn::TensorView::contiguous(k.data(), DType::f32, cpu, {B, L, H, D});
  args.v = liteattn::TensorView::contiguous(v.data(), DType::f32, cpu, {B, L, H, D});
  args.out = liteattn::TensorView::contiguous(out.data(), DType::f32, cpu, {B, L, H, D});
  args.lse = liteattn::TensorView::contiguous(lse.data(), DType::f32, cpu, {B, H, L});
  args.skip.enabled = false;
  liteattn::attention(args);

  double worst = 0.0;
  const double scale = 1.0 / std::sqrt(double(D));
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < L; ++i) {
      std::vector<double> s(L);
      double m = -1e300, sum = 0.0;
      for (int j = 0; j < L; ++j) {
        double dot = 0.0;
        for (int d = 0; d < D; ++d) dot += double(q[(i * H + h) * D + d]) * double(k[(j * H + h) * D + d]);
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      for (int j = 0; j < L; ++j) sum += std::exp(s[j] - m);
      for (int d = 0; d < D; ++d) {
        double o = 0.0;
        for (int j = 0; j < L; ++j) o += std::exp(s[j] - m) / sum * double(v[(j * H + h) * D + d]);
        worst = std::max(worst, std::fabs(o - double(out[(i * H + h) * D + d])));
      }
      worst = std::max(worst, std::fabs(m + std::log(sum) - double(lse[h * L + i])));
    }

  // A skipping call with a state, to link the rest of the API.
  liteattn::SkipState state;
  args.skip.enabled = true;
  liteattn::attention(args, state);
  const bool state_ok = state.stats().calls == 1;

  std::printf("liteattn %d.%d.%d consumer: max abs error %.3g, state %s\n", LITEATTN_VERSION_MAJOR, LITEATTN_VERSION_MINOR,
              LITEATTN_VERSION_PATCH, worst, state_ok ? "ok" : "wrong");
  return worst < 1e-5 && state_ok ? 0 : 1;
}

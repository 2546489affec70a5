// Every bad-input rule of the contract (docs/method.md, include/liteattn/attention.hpp): a clear
// liteattn::ArgumentError naming the argument, and a rejected call leaves the outputs and the
// state exactly as they were.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/backends.hpp"
#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::ArgumentError;
using liteattn::AttentionArgs;
using liteattn::Device;
using liteattn::DeviceKind;
using liteattn::SkipState;
using liteattn::TokenRange;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
const Device kCuda{DeviceKind::cuda, 0};

struct BadCase {
  const char* name;
  const char* argument;  // what ArgumentError::argument() must say
  std::function<void(AttentionArgs&)> mutate;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << "expects " << c.argument; }

std::string argument_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find(e.argument()), std::string::npos) << "the message names the argument";
    return e.argument();
  } catch (const std::exception& e) {
    return std::string("<other exception: ") + e.what() + ">";
  }
  return "<no exception>";
}

std::vector<TokenRange> many_ranges(int n) {
  std::vector<TokenRange> r;
  for (int i = 0; i < n; ++i) r.push_back({i, i + 1});
  return r;
}

// B=2, Lq=20, Lk=24, H=4, Hkv=2, D=16; 8x8 tiles.
std::vector<BadCase> bad_cases() {
  return {
      {"q_missing", "q", [](auto& a) { a.q.data = nullptr; }},
      {"q_rank3", "q", [](auto& a) { a.q.rank = 3; }},
      {"k_rank3", "k", [](auto& a) { a.k.rank = 3; }},
      {"v_rank2", "v", [](auto& a) { a.v.rank = 2; }},
      {"out_rank3", "out", [](auto& a) { a.out.rank = 3; }},
      {"out_missing", "out", [](auto& a) { a.out.data = nullptr; }},
      {"q_zero_length", "q", [](auto& a) { a.q.shape[1] = 0; }},
      {"k_dtype", "k", [](auto& a) { a.k.dtype = DType::bf16; }},
      {"v_dtype", "v", [](auto& a) { a.v.dtype = DType::f16; }},
      {"out_dtype", "out", [](auto& a) { a.out.dtype = DType::bf16; }},
      {"k_batch", "k", [](auto& a) { a.k.shape[0] = 1; }},
      {"k_head_dim", "k", [](auto& a) { a.k.shape[3] = 8; }},
      {"v_length", "v", [](auto& a) { a.v.shape[1] = 23; }},
      {"v_heads", "v", [](auto& a) { a.v.shape[2] = 1; }},
      {"out_shape", "out", [](auto& a) { a.out.shape[1] = 19; }},
      {"gqa_not_dividing", "k", [](auto& a) { a.k.shape[2] = a.v.shape[2] = 3; }},
      {"q_last_stride", "q", [](auto& a) { a.q.stride[3] = 2; }},
      {"v_last_stride", "v", [](auto& a) { a.v.stride[3] = 2; }},
      {"out_last_stride_zero", "out", [](auto& a) { a.out.stride[3] = 0; }},
      {"k_negative_stride", "k", [](auto& a) { a.k.stride[1] = -a.k.stride[1]; }},
      {"k_device", "k", [](auto& a) { a.k.device = kCuda; }},
      {"v_device", "v", [](auto& a) { a.v.device = kCuda; }},
      {"out_device", "out", [](auto& a) { a.out.device = kCuda; }},
      {"lse_device", "lse", [](auto& a) { a.lse.device = kCuda; }},
      {"cuda_fp32", "q", [](auto& a) { a.q.device = a.k.device = a.v.device = a.out.device = a.lse.device = kCuda; }},
      {"cuda_head_dim", "q",
       [](auto& a) {
         for (auto* t : {&a.q, &a.k, &a.v, &a.out}) t->device = kCuda, t->dtype = DType::bf16;
         a.lse.device = kCuda;
         a.q.shape[3] = a.k.shape[3] = a.v.shape[3] = a.out.shape[3] = 8;  // 64 and 128 only
       }},
      {"cpu_tile_on_cuda", "cpu_tile",
       [](auto& a) {  // a valid CUDA call but for cpu_tile: head dim 64, views over fake device addresses
         std::uintptr_t address = std::uintptr_t(1) << 40;
         for (auto* t : {&a.q, &a.k, &a.v, &a.out}) {
           *t = liteattn::TensorView::contiguous(reinterpret_cast<void*>(address += std::uintptr_t(1) << 30), DType::bf16,
                                                 kCuda, {t->shape[0], t->shape[1], t->shape[2], 64});
         }
         a.lse.device = kCuda;
         a.lse.data = reinterpret_cast<void*>(address + (std::uintptr_t(1) << 30));
       }},
      {"lse_dtype", "lse", [](auto& a) { a.lse.dtype = DType::bf16; }},
      {"lse_length", "lse", [](auto& a) { a.lse.shape[2] = 21; }},
      {"lse_heads", "lse", [](auto& a) { a.lse.shape[1] = 2; }},
      {"lse_rank", "lse", [](auto& a) { a.lse.rank = 2; }},
      {"lse_strided", "lse", [](auto& a) { a.lse.stride[1] = 40, a.lse.stride[0] = 160; }},
      {"scale_zero", "scale", [](auto& a) { a.scale = 0.0f; }},
      {"scale_negative", "scale", [](auto& a) { a.scale = -0.25f; }},
      {"scale_nan", "scale", [](auto& a) { a.scale = kNaN; }},
      {"scale_inf", "scale", [](auto& a) { a.scale = kInf; }},
      {"cpu_tile_zero", "cpu_tile", [](auto& a) { a.cpu_tile = TileShape{0, 8}; }},
      {"cpu_tile_huge", "cpu_tile", [](auto& a) { a.cpu_tile = TileShape{8, 5000}; }},
      {"cpu_threads", "cpu_threads", [](auto& a) { a.cpu_threads = -1; }},
      {"cpu_threads_huge", "cpu_threads", [](auto& a) { a.cpu_threads = 100000; }},
      {"scale_overflowing_log2e", "scale", [](auto& a) { a.scale = 3e38f; }},
      {"q_dtype_unknown", "q", [](auto& a) { a.q.dtype = static_cast<DType>(7); }},
      {"criterion_unknown", "criterion", [](auto& a) { a.skip.criterion = static_cast<liteattn::Criterion>(5); }},
      {"order_unknown", "order", [](auto& a) { a.skip.order = static_cast<liteattn::VisitOrder>(9); }},
      {"backend_unknown", "backend", [](auto& a) { a.backend = static_cast<liteattn::Backend>(9); }},
      {"lse_rank6", "lse", [](auto& a) { a.lse.rank = 6; }},
      // Past 2^31 - 1 (here key tiles too) the tile indices would wrap: a broadcast view of that length.
      {"k_length_over_int32", "k",
       [](auto& a) {
         a.k.shape[1] = a.v.shape[1] = std::int64_t(1) << 31;
         a.k.stride[1] = a.v.stride[1] = 0;
       }},
      // out is written while q, k and v are read: no overlap, no element written twice.
      {"out_aliases_q", "out", [](auto& a) { a.out.data = a.q.data; }},
      {"out_overlaps_k", "out", [](auto& a) { a.out.data = a.k.data; }},
      {"out_broadcast", "out", [](auto& a) { a.out.stride[1] = 0; }},
      {"out_interleaved", "out", [](auto& a) { a.out.stride[2] = 8; }},  // D = 16: rows of two heads share elements
      {"lse_overlaps_out", "lse", [](auto& a) { a.lse.data = a.out.data; }},
      {"gpu_backend_for_cpu_tensors", "backend", [](auto& a) { a.backend = liteattn::Backend::sm80; }},
      {"threshold_positive", "threshold", [](auto& a) { a.skip.threshold = 0.5f; }},
      {"threshold_nan", "threshold", [](auto& a) { a.skip.threshold = kNaN; }},
      {"threshold_inf", "threshold", [](auto& a) { a.skip.threshold = kInf; }},
      {"must_do_past_end", "must_do", [](auto& a) { a.must_do = {{20, 25}}; }},
      {"must_do_negative", "must_do", [](auto& a) { a.must_do = {{-1, 2}}; }},
      {"must_do_empty", "must_do", [](auto& a) { a.must_do = {{5, 5}}; }},
      {"must_do_reversed", "must_do", [](auto& a) { a.must_do = {{6, 4}}; }},
      {"must_do_out_of_order", "must_do", [](auto& a) { a.must_do = {{10, 12}, {2, 4}}; }},
      {"must_do_overlapping", "must_do", [](auto& a) { a.must_do = {{2, 6}, {5, 8}}; }},
      {"must_do_too_many", "must_do", [](auto& a) { a.must_do = many_ranges(17); }},
      {"must_skip_past_end", "must_skip", [](auto& a) { a.must_skip = {{0, 25}}; }},
      {"must_skip_out_of_order", "must_skip", [](auto& a) { a.must_skip = {{10, 12}, {9, 10}}; }},
      {"must_skip_overlapping", "must_skip", [](auto& a) { a.must_skip = {{0, 8}, {7, 9}}; }},
      {"must_skip_empty", "must_skip", [](auto& a) { a.must_skip = {{3, 3}}; }},
      {"dense_queries_past_end", "dense_queries", [](auto& a) { a.dense_queries = {{0, 21}}; }},  // Lq = 20
      {"dense_queries_reversed", "dense_queries", [](auto& a) { a.dense_queries = {{4, 2}}; }},
      {"must_do_overlaps_must_skip", "must_skip",
       [](auto& a) {
         a.must_do = {{2, 6}};
         a.must_skip = {{5, 16}};
       }},
      {"must_do_overlaps_must_skip_later_range", "must_skip",
       [](auto& a) {
         a.must_do = {{0, 1}, {20, 22}};
         a.must_skip = {{8, 16}, {21, 24}};
       }},
  };
}

TEST(TensorView, ContiguousTakesAtMostFourDimensions) {
  const auto t = liteattn::TensorView::contiguous(nullptr, DType::f32, {}, {2, 3, 4, 5});
  EXPECT_EQ(t.stride, (std::array<std::int64_t, 4>{60, 20, 5, 1}));
  EXPECT_EQ(argument_of([] { (void)liteattn::TensorView::contiguous(nullptr, DType::f32, {}, {1, 2, 3, 4, 5}); }), "shape");
}

class BadInput : public ::testing::TestWithParam<BadCase> {
 protected:
  BadInput() : p(2, 20, 24, 4, 2, 16) {
    p.randomize(1);
    p.add_locality(1.0 / 16.0);
  }
  AttentionArgs valid() const {
    auto a = p.args();
    a.cpu_tile = TileShape{8, 8};
    a.skip.enabled = true;
    a.skip.threshold = -2.0f;
    return a;
  }
  Problem p;
};

TEST_P(BadInput, ThrowsArgumentErrorNamingTheArgumentAndChangesNothing) {
  const auto& c = GetParam();
  // A state with history, and outputs from a valid call.
  SkipState state;
  for (int i = 0; i < 2; ++i) liteattn::attention(valid(), state);
  ASSERT_GT(state.stats().next_sparsity(), 0.0);
  const auto out_before = p.out.bytes();
  const auto lse_before = p.lse.data;
  const auto state_before = state_bytes(state);

  auto args = valid();
  c.mutate(args);
  EXPECT_EQ(argument_of([&] { liteattn::validate(args); }), c.argument) << c.name;
  EXPECT_EQ(argument_of([&] { liteattn::attention(args, state); }), c.argument) << c.name;
  auto with_view = args;
  with_view.state = state.view();
  EXPECT_EQ(argument_of([&] { liteattn::attention(with_view); }), c.argument) << c.name;

  EXPECT_EQ(p.out.bytes(), out_before) << c.name;
  EXPECT_EQ(std::memcmp(p.lse.data.data(), lse_before.data(), lse_before.size() * 4), 0) << c.name;
  EXPECT_EQ(state_bytes(state), state_before) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Rules, BadInput, ::testing::ValuesIn(bad_cases()), [](const auto& info) { return info.param.name; });

TEST(Validation, DtypeErrorsAreTypeErrors) {
  Problem p(1, 4, 4, 1, 1, 8);
  auto a = p.args();
  a.k.dtype = DType::bf16;
  try {
    liteattn::validate(a);
    FAIL() << "no exception";
  } catch (const ArgumentError& e) {
    EXPECT_EQ(e.kind(), ArgumentError::Kind::type);
  }
}

TEST(Validation, HeadDimTooLargeOnTheCpu) {
  Problem p(1, 2, 3, 1, 1, 513);
  EXPECT_EQ(argument_of([&] { liteattn::attention(p.args()); }), "q");
  Problem ok(1, 2, 3, 1, 1, 512);
  EXPECT_EQ(argument_of([&] { liteattn::attention(ok.args()); }), "<no exception>");
}

TEST(Validation, StateRules) {
  Problem p(1, 20, 24, 2, 2, 16);
  p.randomize(2);
  auto args = p.args();
  args.cpu_tile = TileShape{8, 8};
  args.skip.enabled = true;
  // Skipping needs a state.
  EXPECT_EQ(argument_of([&] { liteattn::attention(args); }), "state");
  // A state made for another key (another tile shape, another length, another criterion).
  for (auto change : std::vector<std::function<void(AttentionArgs&)>>{
           [](auto& a) { a.cpu_tile = TileShape{8, 16}; },
           [](auto& a) { a.q.shape[1] = 19, a.out.shape[1] = 19, a.lse = {}; },
           [](auto& a) { a.skip.criterion = liteattn::Criterion::previous; },
       }) {
    SkipState other;
    auto made_for = args;
    change(made_for);
    other.prepare(liteattn::state_key(made_for));
    liteattn::attention(made_for, other);
    const auto before = state_bytes(other);
    const auto out_before = p.out.bytes();
    auto call = args;
    call.state = other.view();
    EXPECT_EQ(argument_of([&] { liteattn::attention(call); }), "state");
    EXPECT_EQ(state_bytes(other), before);
    EXPECT_EQ(p.out.bytes(), out_before);
  }
  // Skipping disabled: no state needed and a positive threshold is ignored.
  auto dense = p.args();
  dense.skip.enabled = false;
  dense.skip.threshold = 3.0f;
  EXPECT_EQ(argument_of([&] { liteattn::attention(dense); }), "<no exception>");
}

TEST(Validation, EdgeRangesAreAccepted) {
  Problem p(1, 20, 24, 1, 1, 16);
  p.randomize(3);
  SkipState state;
  auto args = p.args();
  args.cpu_tile = TileShape{8, 8};
  args.skip.enabled = true;
  args.must_do = {{0, 4}, {4, 8}};    // touching ranges
  args.must_skip = {{8, 16}, {16, 24}};  // up to Lk, touching must_do's end
  args.dense_queries = {{0, 20}};
  EXPECT_EQ(argument_of([&] { liteattn::attention(args, state); }), "<no exception>");
  args.must_do = many_ranges(16);  // the most ranges a call may pass
  args.must_skip = {};
  EXPECT_EQ(argument_of([&] { liteattn::attention(args, state); }), "<no exception>");
}

TEST(Validation, ParsersNameTheirArgument) {
  EXPECT_EQ(argument_of([] { liteattn::parse_dtype("int8", "dtype"); }), "dtype");
  EXPECT_EQ(argument_of([] { liteattn::parse_criterion("max", "criterion"); }), "criterion");
  EXPECT_EQ(argument_of([] { liteattn::parse_visit_order("random", "--order"); }), "--order");
  EXPECT_EQ(liteattn::parse_dtype("bf16", "dtype"), DType::bf16);
  EXPECT_EQ(liteattn::parse_visit_order("diagonal_first", "order"), liteattn::VisitOrder::diagonal_first);
  EXPECT_EQ(liteattn::parse_criterion("previous", "c"), liteattn::Criterion::previous);
}

TEST(Validation, AvailableBackendsPerDevice) {
  using liteattn::Backend;
  const auto all = liteattn::available_backends();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), Backend::cpu);
  EXPECT_EQ(liteattn::available_backends(liteattn::Device{}), std::vector<Backend>{Backend::cpu});
  // An index that is not a visible GPU: every index here without a GPU or without CUDA support.
#if defined(LITEATTN_WITH_CUDA)
  const int gpus = liteattn::cuda_device_count();
#else
  const int gpus = 0;
#endif
  for (int index : {-1, gpus})
    EXPECT_EQ(argument_of([&] { liteattn::available_backends(liteattn::Device{DeviceKind::cuda, index}); }), "device");
  for (int index = 0; index < gpus; ++index) {  // the machine's list is the CPU plus each GPU's kernels
    for (Backend b : liteattn::available_backends(liteattn::Device{DeviceKind::cuda, index}))
      EXPECT_NE(std::find(all.begin(), all.end(), b), all.end()) << liteattn::to_string(b);
  }
}

}  // namespace

#if defined(LITEATTN_WITH_CUDA)
// Each kernel's own rules (16-byte rows, TMA strides, out pairs). validate() runs the serving
// kernel's rules last, before any state is prepared (the GPU tests check that a call is rejected
// through validate()); here the rule functions alone, on CUDA views over fake addresses (they
// read only metadata and pointer values, so no GPU is needed).
TEST(Validation, KernelRulesRejectMisalignedViews) {
  auto view = [](std::uintptr_t address, std::int64_t L) {
    liteattn::TensorView t = liteattn::TensorView::contiguous(reinterpret_cast<void*>(address), liteattn::DType::bf16,
                                                              liteattn::Device{liteattn::DeviceKind::cuda, 0}, {1, L, 2, 64});
    return t;
  };
  liteattn::AttentionArgs a;
  a.q = view(0x10000, 300);
  a.k = view(0x20000, 300);
  a.v = view(0x30000, 300);
  a.out = view(0x40000, 300);
  a.skip.enabled = false;
  using Rules = void (*)(const liteattn::AttentionArgs&);
  for (Rules rules : {Rules(&liteattn::check_sm90_args), Rules(&liteattn::check_sm80_args)}) {
    EXPECT_NO_THROW(rules(a));
    auto expect_error = [&](const liteattn::AttentionArgs& args, const char* argument) {
      try {
        rules(args);
        ADD_FAILURE() << "expected an error naming " << argument;
      } catch (const liteattn::ArgumentError& e) {
        EXPECT_EQ(e.argument(), argument) << e.what();
      }
    };
    liteattn::AttentionArgs misaligned = a;
    misaligned.q.data = reinterpret_cast<void*>(0x10002);
    expect_error(misaligned, "q");
    liteattn::AttentionArgs odd_stride = a;
    odd_stride.k.stride[1] = 132;  // 264 bytes: not a multiple of 16
    odd_stride.k.stride[0] = 132 * 300;
    expect_error(odd_stride, "k");
    liteattn::AttentionArgs odd_out = a;
    odd_out.out.data = reinterpret_cast<void*>(0x40002);
    expect_error(odd_out, "out");
  }
  // Only the Hopper kernel keeps a query tile's visit list in shared memory: past its key-tile
  // limit it refuses, the portable kernel does not.
  liteattn::AttentionArgs long_keys = a;
  long_keys.k.shape[1] = long_keys.v.shape[1] = 600000;
  long_keys.k.stride[0] = long_keys.v.stride[0] = 600000 * long_keys.k.stride[1];
  EXPECT_THROW(liteattn::check_sm90_args(long_keys), liteattn::UnsupportedError);
  EXPECT_NO_THROW(liteattn::check_sm80_args(long_keys));
  // Which is why a Hopper GPU falls back to the portable kernel for such shapes.
  EXPECT_TRUE(liteattn::sm90_serves_shape(a));
  EXPECT_FALSE(liteattn::sm90_serves_shape(long_keys));
  // Key positions run to the end of the last tile: a broadcast K / V of 2^31 - 1 keys would wrap
  // the portable kernel's 32-bit positions in its last tile (padding keys entered the softmax).
  liteattn::AttentionArgs near_2_31 = a;
  near_2_31.k.shape[1] = near_2_31.v.shape[1] = (std::int64_t(1) << 31) - 1;
  near_2_31.k.stride[0] = near_2_31.k.stride[1] = near_2_31.v.stride[0] = near_2_31.v.stride[1] = 0;
  EXPECT_THROW(liteattn::check_sm80_args(near_2_31), liteattn::UnsupportedError);
  near_2_31.k.shape[1] = near_2_31.v.shape[1] = (std::int64_t(1) << 31) - 1024;  // whole tiles stay below 2^31
  EXPECT_NO_THROW(liteattn::check_sm80_args(near_2_31));
}
#endif

// The Hopper (sm_90a) LiteAttention forward kernel.
//
// Design (FlashAttention-3 family, written for this project):
// - Persistent grid: one CTA per SM walks the work tiles (b, h, query tile): round-robin in
//   dense calls; in skipping calls, where work tiles hold different numbers of key tiles, each
//   CTA takes its next work tile from a per-call counter, so none is left with most of the work.
// - Warp specialization: warpgroup 0 is the producer (registers given back with setmaxnreg):
//   its warp 0 issues the TMA loads, its warp 1 owns the skip state, its warp 2 stores O.
//   Warpgroups 1 and 2 are consumers (64 query rows each, wgmma, online softmax, skip votes;
//   registers raised).
// - K and V flow through a multi-stage shared-memory pipeline (mbarriers, PipelineTmaAsync).
//   The skip-state warp turns each work tile's skip policy into a list of the key tiles it
//   visits (32 positions per step, ballot + popc) in a shared-memory slot, up to two work tiles
//   ahead; the load warp loads only those tiles, so a skipped tile is never loaded, and the
//   consumers read the same list, so all sides see the same sequence and none scans skipped bits
//   one by one.
// - QK^T is an SS wgmma (Q and K from shared memory); PV is an RS wgmma (P from registers,
//   V^T read MN-major straight from the TMA-written tile, no transpose).
// - Intra-warpgroup overlap: the QK^T of tile n+1 and the PV of tile n are in flight while the
//   softmax of tile n+1 runs.
// - The skip test costs one compare per row and tile (the row max is already needed by the
//   softmax) and a warp vote; each warp ORs its votes into the slot once per 32 visit positions.
//   When the consumers are done with a work tile, the skip-state warp maps the votes to key tiles
//   and writes the mask row, so skip-state memory never stalls a load or a consumer.
// - Q is double-buffered: a work tile's Q loads while the previous one computes. The consumers
//   stage O in the Q buffer after their last QK^T and go on to the next work tile; the store
//   warp writes the staged tile out with the TMA and then gives the buffer back to the load
//   warp. (When out is not 16-byte aligned the consumers store O from registers, 4 bytes at a
//   time, and the store warp only passes the buffer on.)
#pragma once

#include <cstdint>

// wgmma shapes with N not a power-of-two multiple (176, 144, ...) are only selectable with this
// defined; without it a 176-wide tile silently falls back to 64x16 atoms.
#ifndef CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#define CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#endif

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/pipeline.hpp>

#include "core/plan.hpp"
#include "core/skip_policy.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn::sm90 {

using namespace cute;

// ------------------------------------------------------------------------------------------
// Compile-time configuration of one instantiation (element type x head dim).
// ------------------------------------------------------------------------------------------
template <class Element_, int kHeadDim_>
struct KernelTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = tile_shape_for_head_dim(kHeadDim_).m;
  static constexpr int kBlockN = tile_shape_for_head_dim(kHeadDim_).n;
  static constexpr int kStages = pipeline_stages_for_head_dim(kHeadDim_);
  static constexpr int kConsumerWarpgroups = kBlockM / 64;
  static constexpr int kMmaThreads = kConsumerWarpgroups * cutlass::NumThreadsPerWarpGroup;
  static constexpr int kThreads = kMmaThreads + cutlass::NumThreadsPerWarpGroup;
  // Register split after setmaxnreg: 24 for the producer, 240 for each consumer thread. The
  // increase draws only on what the CTA was launched with (384 threads x 168 = 128 * 24 + 256 *
  // 240): a split above that total makes setmaxnreg.inc wait forever.
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
  static_assert(kProducerRegisters * cutlass::NumThreadsPerWarpGroup + kConsumerRegisters * kMmaThreads <=
                    (65536 / kThreads) / 8 * 8 * kThreads,
                "setmaxnreg split above the CTA's launch allocation: the consumers' increase would hang");

  using TileShapeQK = Shape<Int<kBlockM>, Int<kBlockN>, Int<kHeadDim>>;
  using TileShapePV = Shape<Int<kBlockM>, Int<kHeadDim>, Int<kBlockN>>;
  using AtomLayout = Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>;

  using TiledMmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, TileShapeQK>(), AtomLayout{}));
  static_assert(size<1>(typename TiledMmaQK::AtomShape_MNK{}) == kBlockN,
                "the QK^T wgmma atom must span the key tile (else many small wgmmas)");
  using TiledMmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, TileShapePV, GMMA::Major::K, GMMA::Major::MN>(),
      AtomLayout{}));
  static_assert(size<1>(typename TiledMmaPV::AtomShape_MNK{}) == kHeadDim, "the PV wgmma atom must span the head dim");

  // 128-byte swizzled tiles; K-major for Q and K, MN-major (head dim contiguous) for V^T.
  // Q is double-buffered over work tiles (the last mode): the next query tile loads while this
  // one computes, so no work tile starts by waiting for its Q.
  using SmemLayoutQ = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{},
                                             Shape<Int<kBlockM>, Int<kHeadDim>, _2>{}));
  using SmemLayoutK = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{},
                                             Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutVt = decltype(tile_to_shape(GMMA::Layout_MN_SW128_Atom<Element>{},
                                              Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{},
                                              Step<_2, _1, _3>{}));

  // Global views: (seq, dim, head, batch) for Q and K, (dim, seq, head, batch) for V^T.
  using GmemShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GmemStrideQK = Stride<int64_t, _1, int64_t, int64_t>;
  using GmemStrideVt = Stride<_1, int64_t, int64_t, int64_t>;

  using TmaQ = decltype(make_tma_copy(
      SM90_TMA_LOAD{},
      make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemShape{}, GmemStrideQK{}),
      take<0, 2>(SmemLayoutQ{}), Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaK = decltype(make_tma_copy(
      SM90_TMA_LOAD{},
      make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemShape{}, GmemStrideQK{}),
      take<0, 2>(SmemLayoutK{}), Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));
  using TmaV = decltype(make_tma_copy(
      SM90_TMA_LOAD{},
      make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemShape{}, GmemStrideVt{}),
      take<0, 2>(SmemLayoutVt{}), Shape<Int<kHeadDim>, Int<kBlockN>>{}, _1{}));

  // The store warp writes O from where the consumers staged it, the Q buffer, with the TMA in
  // boxes of kBlockM x 64: each box is one 16 KB block of the 128-byte-swizzled Q layout (a
  // swizzle row is 64 elements wide).
  static constexpr int kBoxColumnsO = 64;
  using SmemLayoutOBox = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{},
                                                Shape<Int<kBlockM>, Int<kBoxColumnsO>>{}));
  using TmaO = decltype(make_tma_copy(
      SM90_TMA_STORE{},
      make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), GmemShape{}, GmemStrideQK{}),
      SmemLayoutOBox{}, Shape<Int<kBlockM>, Int<kBoxColumnsO>>{}, _1{}));
  static_assert(kHeadDim % kBoxColumnsO == 0, "O is stored in whole boxes");

  static constexpr uint32_t kBytesQ = uint32_t(size(take<0, 2>(SmemLayoutQ{})) * sizeof(Element));
  static constexpr uint32_t kBytesK = uint32_t(size(take<0, 2>(SmemLayoutK{})) * sizeof(Element));
  static constexpr uint32_t kBytesV = uint32_t(size(take<0, 2>(SmemLayoutVt{})) * sizeof(Element));

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  using PipelineState = cutlass::PipelineState<kStages>;

  struct SharedStorage {
    // The 128-byte swizzle repeats every 1024 bytes: tiles start on 1024-byte boundaries.
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutVt>, 1024> v;
    typename Pipeline::SharedStorage pipeline_k;
    typename Pipeline::SharedStorage pipeline_v;
    alignas(8) uint64_t q_full[2];   // TMA transaction barrier of each Q buffer
    alignas(8) uint64_t o_staged[2];  // every consumer thread arrives once its rows of O are staged (or stored)
    alignas(8) uint64_t q_empty[2];   // the store warp arrives once the staged O has been read out
    // One slot per work tile in flight, a 3-deep channel from the skip-state warp to the load
    // warp, the store warp and the consumers (full: the skip-state warp's 32 lanes arrive; empty:
    // the load warp arrives after its last list read, the store warp once it has read the work
    // tile, every consumer thread after its last read and vote).
    // The skip-state warp owns the skip state's global memory: it copies the read mask row into
    // the slot and turns it into the visit list, the consumers vote into the slot, and it writes
    // the new mask row when the slot comes back. So neither the loads nor the consumers ever
    // wait on skip-state memory, and the consumers never wait on each other for it.
    static constexpr int kLists = 3;
    alignas(8) uint64_t list_full[kLists];
    alignas(8) uint64_t list_empty[kLists];
    int32_t work_index[kLists];                   // the slot's work tile (linear index); -1: no more
    int32_t visit_count[kLists];
    uint32_t row_visits[kLists];                  // the row's call counter when the slot was filled
    bool dense_row[kLists];                       // the slot's QueryTilePolicy::dense()
    uint32_t read_mask[kLists][kMaxMaskWords];    // copy of the row's read mask
    uint32_t votes[kLists][kMaxMaskWords];        // keep votes by visit position (consumers' atomicOr)
    int16_t visit_list[kLists][kMaxMaskWords * 32];
  };
  static constexpr int kSharedBytes = int(sizeof(SharedStorage));
  static_assert(kSharedBytes <= 227 * 1024, "shared memory over the sm_90 limit");
};

// Kernel parameters: TMA descriptors, the call plan and the raw pointers. Passed by value as a
// __grid_constant__ so the descriptors stay in parameter space (TMA needs their address).
template <class Traits>
struct Params {
  typename Traits::TmaQ tma_q;
  typename Traits::TmaK tma_k;
  typename Traits::TmaV tma_v;
  typename Traits::TmaO tma_o;  // built only when store_out_with_tma
  CallPlan plan;
  int32_t len_q, len_k, heads, kv_heads, batch, group;  // group = heads / kv_heads
  int32_t num_work_tiles;
  void* out;
  int64_t out_stride_b, out_stride_l, out_stride_h;
  float* lse;  // may be null
  int64_t lse_stride_b, lse_stride_h, lse_stride_l;
  // Skip state (only touched when plan.skipping).
  uint32_t* mask;
  uint32_t* row_visits;
  float* row_max;  // criterion previous only
  uint32_t* kept;
  unsigned long long* cumulative;  // optional running totals of the kept counts (null: none)
  // Skipping calls hand out work tiles dynamically: each CTA takes its next one from this per-call
  // counter (the word after the kept counts, zeroed before the launch). Null: static round robin.
  uint32_t* work_counter;
  // Order the two consumer warpgroups' GEMM issue (one issues while the other runs softmax).
  bool schedule_warpgroups;
  // out meets the TMA's rules (base and strides multiples of 16 bytes): the consumers stage O in
  // shared memory for the store warp (tma_o). Otherwise they store it from registers.
  bool store_out_with_tma;
};

// Named barriers (ids above CUTLASS's reserved ones; NamedBarrier adds the offset).
// wg_turn + w: consumer warpgroup w may issue its next GEMMs (see the consumer main loop).
enum class Barrier : uint32_t { wg_turn = 0 };

// ------------------------------------------------------------------------------------------
// Small device helpers.
// ------------------------------------------------------------------------------------------
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// max that returns NaN when either input is NaN (PTX max.NaN, one FMNMX like fmaxf). fmaxf drops
// NaN; with this a NaN score makes the tile's and then the row's running max NaN, as in the CPU
// reference, so the row votes keep for the rest of the call (method.md section 3).
__device__ __forceinline__ float max_nan(float a, float b) {
  float y;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(y) : "f"(a), "f"(b));
  return y;
}

template <class Element>
__device__ __forceinline__ uint32_t pack2(float a, float b);

template <>
__device__ __forceinline__ uint32_t pack2<cutlass::bfloat16_t>(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return reinterpret_cast<uint32_t&>(v);
}

template <>
__device__ __forceinline__ uint32_t pack2<cutlass::half_t>(float a, float b) {
  __half2 v = __floats2half2_rn(a, b);
  return reinterpret_cast<uint32_t&>(v);
}

// Issues one warpgroup GEMM (all k blocks) as one wgmma batch. wait < 0: leave it in flight.
template <bool kZeroInit, int kWait, class TiledMma, class TA, class TB, class TC>
__device__ __forceinline__ void wg_gemm(TiledMma& tiled_mma, TA const& a, TB const& b, TC& c) {
  // A from registers (RS) when its elements are the MMA's element type, not smem descriptors.
  constexpr bool kRegisterA = !is_same_v<typename TA::engine_type::iterator, GMMA::DescriptorIterator>;
  if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  if constexpr (kZeroInit) tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(tiled_mma, a(_, _, kb), b(_, _, kb), c);
    tiled_mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  if constexpr (kWait >= 0) warpgroup_wait<kWait>();
  warpgroup_fence_operand(c);
  if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
}

// The work tile behind a linear index: query tiles of one (b, h) are adjacent, so the CTAs that
// run at the same time share K and V of one head in L2.
struct WorkTile {
  int32_t m_block, bh, b, h;
};

__device__ __forceinline__ WorkTile decode_work_tile(int32_t index, int32_t q_tiles, int32_t heads) {
  WorkTile w;
  w.m_block = index % q_tiles;
  w.bh = index / q_tiles;
  w.b = w.bh / heads;
  w.h = w.bh % heads;
  return w;
}

// ------------------------------------------------------------------------------------------
// The kernel.
// ------------------------------------------------------------------------------------------
template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    attention_fwd_kernel(const __grid_constant__ Params<Traits> params) {
  using Element = typename Traits::Element;
  using Pipeline = typename Traits::Pipeline;
  using PipelineState = typename Traits::PipelineState;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kMmaThreads = Traits::kMmaThreads;
  constexpr int kWarp = cutlass::NumThreadsPerWarp;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& shared = *reinterpret_cast<typename Traits::SharedStorage*>(smem_raw);

  const CallPlan& plan = params.plan;
  const int warp = cutlass::canonical_warp_idx_sync();
  const int warpgroup = cutlass::canonical_warp_group_idx();
  const int lane = threadIdx.x % kWarp;
  const int32_t q_tiles = int32_t(plan.q_tiles);
  const int32_t k_tiles = int32_t(plan.k_tiles);
  const int64_t state_rows = plan.batch * plan.heads * plan.q_tiles;
  const int32_t words = int32_t(plan.words);
  const bool skipping = plan.skipping;  // reads and writes the skip state

  if (warp == 0 && lane == 0) {
    cute::prefetch_tma_descriptor(params.tma_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_v.get_tma_descriptor());
    for (int i = 0; i < 2; ++i) {
      cutlass::arch::ClusterTransactionBarrier::init(&shared.q_full[i], 1);
      cutlass::arch::ClusterBarrier::init(&shared.o_staged[i], kMmaThreads);
      cutlass::arch::ClusterBarrier::init(&shared.q_empty[i], 1);
    }
    for (int i = 0; i < Traits::SharedStorage::kLists; ++i) {
      cutlass::arch::ClusterBarrier::init(&shared.list_full[i], kWarp);
      cutlass::arch::ClusterBarrier::init(&shared.list_empty[i], kMmaThreads + 2 * kWarp);
    }
  }

  typename Pipeline::Params pipe_params;
  pipe_params.role = warpgroup == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pipe_params.is_leader = threadIdx.x == 0;
  pipe_params.num_consumers = kMmaThreads;
  pipe_params.transaction_bytes = Traits::kBytesK;
  Pipeline pipeline_k(shared.pipeline_k, pipe_params, Shape<_1, _1, _1>{});
  pipe_params.transaction_bytes = Traits::kBytesV;
  Pipeline pipeline_v(shared.pipeline_v, pipe_params, Shape<_1, _1, _1>{});
  __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(shared.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(shared.k.data()), typename Traits::SmemLayoutK{});
  Tensor sVt = make_tensor(make_smem_ptr(shared.v.data()), typename Traits::SmemLayoutVt{});

  if (warpgroup == 0) {
    // ---------------------------------- producer ----------------------------------------
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegisters>();
    constexpr int kLists = Traits::SharedStorage::kLists;
    const int32_t stride = int32_t(gridDim.x);

    if (warp == 1) {
      // -------------------------- skip-state warp --------------------------------------
      // Fills each work tile's slot (two work tiles ahead of the consumers) and
      // writes its mask row once the slot comes back, so neither the loads nor the consumers
      // ever wait on the skip state's global memory. At the producer's 24 registers the kernel
      // spills 40 bytes at D = 64 and D = 128 (ptxas warns). At D = 128 (SASS of fb09bd5) all of
      // it is in this warp's code: the consumers, the load warp and the store warp spill nothing.
      auto fill_slot = [&](int n, int32_t index) {
        const int slot = n % kLists;
        const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
        const int64_t row = int64_t(w.bh) * q_tiles + w.m_block;
        uint32_t visits = 0;
        if (skipping) {
          // The row's call counter, then the whole read row in one round trip.
          visits = params.row_visits[row];
          const uint32_t* read_row = params.mask + ((visits & 1u) * state_rows + row) * words;
          for (int32_t word = lane; word < words; word += kWarp) {
            shared.read_mask[slot][word] = read_row[word];
            shared.votes[slot][word] = 0u;
          }
          if (lane == 0) shared.row_visits[slot] = visits;
          __syncwarp();
        }
        // The visit list: the policy evaluated 32 positions at a time, compacted in visit order
        // with a ballot.
        const QueryTilePolicy policy(plan, w.m_block, skipping ? shared.read_mask[slot] : nullptr, visits);
        int16_t* list = shared.visit_list[slot];
        int32_t count = 0;
        for (int32_t base = 0; base < k_tiles; base += kWarp) {
          const int32_t position = base + lane;
          int32_t tile = 0;
          bool visited = false;
          if (position < k_tiles) {
            tile = policy.tile_at(position);
            visited = policy.visits(tile);
          }
          const uint32_t ballot = __ballot_sync(0xffffffffu, visited);
          if (visited) list[count + __popc(ballot & ((1u << lane) - 1u))] = int16_t(tile);
          count += __popc(ballot);
        }
        if (lane == 0) {
          shared.work_index[slot] = index;
          shared.visit_count[slot] = count;
          shared.dense_row[slot] = policy.dense();
          if (skipping) {
            atomicAdd(&params.kept[w.bh], uint32_t(count));
            if (params.cumulative != nullptr) atomicAdd(&params.cumulative[w.bh], static_cast<unsigned long long>(count));
          }
        }
        cutlass::arch::ClusterBarrier::arrive(&shared.list_full[slot]);  // all 32 lanes: release
      };
      // Waits until the consumers and the load warp are done with the slot of work tile n (every
      // vote is in), then writes that work tile's mask row into the other buffer and advances
      // its call counter.
      auto drain_slot = [&](int n) {
        const int slot = n % kLists;
        cutlass::arch::ClusterBarrier::wait(&shared.list_empty[slot], (n / kLists) & 1);
        if (!skipping) return;
        const WorkTile w = decode_work_tile(shared.work_index[slot], q_tiles, params.heads);
        const int64_t row = int64_t(w.bh) * q_tiles + w.m_block;
        const uint32_t visits = shared.row_visits[slot];
        const bool dense_row = shared.dense_row[slot];
        // The new row is built where the read row was: writing needs only the policy's dense
        // flag and must_do, not the read bits. Tiles the call did not visit stay 0.
        uint32_t* new_row = shared.read_mask[slot];
        for (int32_t word = lane; word < words; word += kWarp) new_row[word] = 0u;
        __syncwarp();
        const int16_t* list = shared.visit_list[slot];
        const int32_t count = shared.visit_count[slot];
        for (int32_t base = 0; base < count; base += kWarp) {
          const int32_t position = base + lane;
          if (position >= count) break;
          const int32_t tile = list[position];
          const bool voted = (shared.votes[slot][base / kWarp] >> lane) & 1u;
          if (QueryTilePolicy::writes_keep(plan, dense_row, tile, voted)) atomicOr(&new_row[tile >> 5], 1u << (tile & 31));
        }
        __syncwarp();
        uint32_t* write_row = params.mask + ((1u - (visits & 1u)) * state_rows + row) * words;
        for (int32_t word = lane; word < words; word += kWarp) write_row[word] = new_row[word];
        if (lane == 0) params.row_visits[row] = visits + 1;
        __syncwarp();  // every lane is done with the slot before the next fill overwrites it
      };

      // Work tile n is taken (and its slot filled) once the consumers are done with work tile
      // n - 3, whose slot it reuses: two work tiles ahead of the consumers, so the fill's global
      // reads never hold up the load warp. Taking it one work tile later balances the CTAs
      // slightly better in simulation (7 % instead of 9 % over an even split at (8192, 40),
      // s = 0.9) but measured no faster on an H100 (bench/NOTES.md, run 11).
      constexpr int kLag = kLists;
      int32_t index = blockIdx.x;  // the first work tile of every CTA is static
      int n = 0;
      for (;; ++n) {
        if (n >= kLag) drain_slot(n - kLag);
        if (n > 0) {
          if (params.work_counter == nullptr) {
            index += stride;
          } else {
            uint32_t taken = 0;
            if (lane == 0) taken = atomicAdd(params.work_counter, 1u);
            index = stride + int32_t(__shfl_sync(0xffffffffu, taken, 0));
          }
        }
        if (index >= params.num_work_tiles) {
          // No more work: an end marker in the slot stops the load warp and the consumers.
          const int slot = n % kLists;
          if (lane == 0) shared.work_index[slot] = -1;
          cutlass::arch::ClusterBarrier::arrive(&shared.list_full[slot]);
          break;
        }
        fill_slot(n, index);
      }
      // n work tiles were filled; the last kLag - 1 of them are not drained yet (the end marker
      // went into the slot of work tile n - kLag, drained above).
      for (int m = n - kLag + 1 > 0 ? n - kLag + 1 : 0; m < n; ++m) drain_slot(m);
      return;
    }
    if (warp == 2) {
      // ------------------------------ store warp -------------------------------------
      // Follows the consumers through the work tiles: once both consumer warpgroups have
      // staged a work tile's O, it stores the tile with the TMA, waits until the TMA has read
      // the staged tile and hands the Q buffer back to the load warp. No consumer waits for a
      // store, and the stores run while the consumers compute the next work tile.
      Tensor mO = params.tma_o.get_tma_tensor(make_shape(params.len_q, kHeadDim, params.heads, params.batch));
      auto tma_o = params.tma_o.get_slice(_0{});
      for (int iteration = 0;; ++iteration) {
        const int slot = iteration % kLists;
        cutlass::arch::ClusterBarrier::wait(&shared.list_full[slot], (iteration / kLists) & 1);
        const int32_t index = shared.work_index[slot];
        cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[slot]);  // only the index was needed
        if (index < 0) break;
        const int q_buffer = iteration & 1;
        cutlass::arch::ClusterBarrier::wait(&shared.o_staged[q_buffer], (iteration >> 1) & 1);
        if (params.store_out_with_tma && lane == 0) {
          const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
          constexpr int kBox = Traits::kBoxColumnsO;
          CUTLASS_PRAGMA_UNROLL
          for (int c = 0; c < kHeadDim / kBox; ++c) {
            // Rows past len_q (a partial last query tile) are outside the tensor map: not stored.
            Tensor gO = local_tile(mO(_, _, w.h, w.b), Shape<Int<kBlockM>, Int<kBox>>{}, make_coord(w.m_block, c));
            Tensor sBox = make_tensor(make_smem_ptr(&sQ(0, c * kBox, q_buffer)), typename Traits::SmemLayoutOBox{});
            copy(params.tma_o, tma_o.partition_S(sBox), tma_o.partition_D(gO));
          }
          tma_store_arrive();
          tma_store_wait<0>();  // the TMA has read the staged tile (its writes complete on their own)
        }
        __syncwarp();
        if (lane == 0) cutlass::arch::ClusterBarrier::arrive(&shared.q_empty[q_buffer]);
      }
      return;
    }
    if (warp != 0) return;

    // ------------------------------ load warp ------------------------------------------
    Tensor mQ = params.tma_q.get_tma_tensor(make_shape(params.len_q, kHeadDim, params.heads, params.batch));
    Tensor mK = params.tma_k.get_tma_tensor(make_shape(params.len_k, kHeadDim, params.kv_heads, params.batch));
    Tensor mVt = params.tma_v.get_tma_tensor(make_shape(kHeadDim, params.len_k, params.kv_heads, params.batch));
    auto tma_q = params.tma_q.get_slice(_0{});
    auto tma_k = params.tma_k.get_slice(_0{});
    auto tma_v = params.tma_v.get_slice(_0{});
    Tensor tQsQ = tma_q.partition_D(sQ);
    Tensor tKsK = tma_k.partition_D(sK);
    Tensor tVsV = tma_v.partition_D(sVt);

    PipelineState write = cutlass::make_producer_start_state<Pipeline>();
    for (int iteration = 0;; ++iteration) {
      const int slot = iteration % kLists;
      cutlass::arch::ClusterBarrier::wait(&shared.list_full[slot], (iteration / kLists) & 1);
      const int32_t index = shared.work_index[slot];
      if (index < 0) break;
      const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
      const int32_t kv_head = w.h / params.group;
      const int16_t* list = shared.visit_list[slot];
      const int32_t count = shared.visit_count[slot];

      Tensor gQ = local_tile(mQ(_, _, w.h, w.b), Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(w.m_block, _0{}));
      Tensor gK = local_tile(mK(_, _, kv_head, w.b), Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
      Tensor gVt = local_tile(mVt(_, _, kv_head, w.b), Shape<Int<kHeadDim>, Int<kBlockN>>{}, make_coord(_0{}, _));
      Tensor tQgQ = tma_q.partition_S(gQ);
      Tensor tKgK = tma_k.partition_S(gK);
      Tensor tVgV = tma_v.partition_S(gVt);

      // Q into its buffer once work tile iteration - 2 has been stored out of it.
      const int q_buffer = iteration & 1;
      if (iteration >= 2) cutlass::arch::ClusterBarrier::wait(&shared.q_empty[q_buffer], ((iteration >> 1) - 1) & 1);
      if (lane == 0) {
        cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&shared.q_full[q_buffer], Traits::kBytesQ);
        copy(params.tma_q.with(shared.q_full[q_buffer], 0), tQgQ, tQsQ(_, _, _, q_buffer));
      }
      for (int32_t i = 0; i < count; ++i) {
        const int32_t tile = list[i];
        pipeline_k.producer_acquire(write);
        if (lane == 0)
          copy(params.tma_k.with(*pipeline_k.producer_get_barrier(write), 0), tKgK(_, _, _, tile),
               tKsK(_, _, _, write.index()));
        pipeline_v.producer_acquire(write);
        if (lane == 0)
          copy(params.tma_v.with(*pipeline_v.producer_get_barrier(write), 0), tVgV(_, _, _, tile),
               tVsV(_, _, _, write.index()));
        ++write;
      }
      cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[slot]);  // done reading the list
    }
    pipeline_k.producer_tail(write);
    pipeline_v.producer_tail(write);
    return;
  }

  // ---------------------------------- consumers -------------------------------------------
  cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegisters>();
  const int thread = threadIdx.x - cutlass::NumThreadsPerWarpGroup;  // 0 .. kMmaThreads-1
  typename Traits::TiledMmaQK tiled_mma_qk;
  typename Traits::TiledMmaPV tiled_mma_pv;
  auto thread_mma_qk = tiled_mma_qk.get_thread_slice(thread);
  auto thread_mma_pv = tiled_mma_pv.get_thread_slice(thread);
  Tensor tSrQ = thread_mma_qk.partition_fragment_A(sQ);
  Tensor tSrK = thread_mma_qk.partition_fragment_B(sK);
  Tensor tOrV = thread_mma_pv.partition_fragment_B(sVt);

  // Each thread owns two rows of the tile (the wgmma accumulator layout): r and r + 8.
  const int local_row0 = (thread / 128) * 64 + ((thread % 128) / kWarp) * 16 + lane / 4;
  const int col_in_quad = (lane % 4) * 2;
  const float scale_log2 = plan.scale_log2;
  const float threshold = plan.threshold;
  const bool previous_criterion = plan.criterion == Criterion::previous;
  const bool partial_last_tile = (params.len_k % kBlockN) != 0;

  // Warpgroup turns: a consumer warpgroup issues its GEMMs (a work tile's first QK^T, each
  // main-loop step's QK^T and PV, the last PV) only on its turn and then hands the turn to the
  // other one, so the tensor cores alternate between them and one warpgroup's softmax overlaps
  // the other's GEMMs. Both walk the same tile sequence, so the turns stay paired across work
  // tiles; warpgroup 0 takes the first turn.
  const int consumer_wg = thread / cutlass::NumThreadsPerWarpGroup;
  const bool schedule = params.schedule_warpgroups;
  auto wait_turn = [&] {
    if (schedule) cutlass::arch::NamedBarrier::sync(kMmaThreads, uint32_t(Barrier::wg_turn) + consumer_wg);
  };
  auto pass_turn = [&] {
    if (schedule) cutlass::arch::NamedBarrier::arrive(kMmaThreads, uint32_t(Barrier::wg_turn) + (1 - consumer_wg));
  };
  if (schedule && consumer_wg == 0) cutlass::arch::NamedBarrier::arrive(kMmaThreads, uint32_t(Barrier::wg_turn));

  PipelineState read;  // starts at stage 0, phase 0 (consumer start state)
  for (int iteration = 0;; ++iteration) {
    // This work tile's slot (visit list, votes), published by the skip-state warp.
    const int list_slot = iteration % Traits::SharedStorage::kLists;
    cutlass::arch::ClusterBarrier::wait(&shared.list_full[list_slot], (iteration / Traits::SharedStorage::kLists) & 1);
    const int32_t index = shared.work_index[list_slot];
    if (index < 0) break;
    const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
    uint32_t* votes = shared.votes[list_slot];

    int global_row[2];
    bool row_valid[2];
    float stored_max[2];
    bool running_ref[2];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      global_row[r] = w.m_block * kBlockM + local_row0 + 8 * r;
      row_valid[r] = global_row[r] < params.len_q;
      stored_max[r] = __int_as_float(0x7fc00000);  // NaN: none stored
      if (skipping && previous_criterion && row_valid[r])
        stored_max[r] = params.row_max[int64_t(w.bh) * params.len_q + global_row[r]];
      running_ref[r] = uses_running_reference(plan.criterion, stored_max[r]);
    }
    float row_max[2] = {neg_inf(), neg_inf()};
    float row_sum[2] = {0.f, 0.f};

    Tensor tOrO = partition_fragment_C(tiled_mma_pv, select<0, 1>(typename Traits::TileShapePV{}));
    clear(tOrO);
    // P as the A operand of the PV wgmma: two adjacent 8-column blocks of the S accumulator are
    // exactly one 16-wide k block of the register A fragment, so the layout is a regrouping.
    auto p_layout = make_layout(make_shape(make_shape(_2{}, _2{}, _2{}), _1{}, Int<kBlockN / 16>{}),
                                make_stride(make_stride(_1{}, _2{}, _4{}), _0{}, _8{}));
    Tensor tOrP = make_tensor<Element>(p_layout);

    uint32_t position_votes = 0;  // warp-uniform
    auto flush_votes = [&](int32_t last_position) {
      if (lane == 0 && position_votes != 0) atomicOr(&votes[last_position >> 5], position_votes);
      position_votes = 0;
    };
    // Masks padding columns of the last key tile, runs the online softmax on the tile's scores,
    // records the skip votes, and leaves P (unnormalised) in S. Returns nothing; scale_o gets the
    // factor by which O must be rescaled.
    auto softmax_tile = [&](auto& tSrS, int32_t tile, int32_t position, float (&scale_o)[2]) {
      if (partial_last_tile && tile == k_tiles - 1) {
        const int valid_cols = params.len_k - tile * kBlockN;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < size(tSrS); ++i) {
          const int col = (i / 4) * 8 + col_in_quad + (i % 2);
          if (col >= valid_cols) tSrS(i) = neg_inf();
        }
      }
      bool vote = false;
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        // Two independent max chains and four partial sums instead of one serial chain each:
        // a shorter softmax critical path (measured +1.4 % dense at (32760, 40) on H100, NOTES run 21).
        float part_max[2] = {neg_inf(), neg_inf()};
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tSrS) / 4; ++nb) {
          part_max[nb % 2] = max_nan(part_max[nb % 2], max_nan(tSrS(nb * 4 + 2 * r), tSrS(nb * 4 + 2 * r + 1)));
        }
        float tile_max = max_nan(part_max[0], part_max[1]);
        tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        if (skipping && row_valid[r]) {  // dense calls skip the vote entirely
          const float reference = running_ref[r] ? row_max[r] : stored_max[r];
          vote |= row_votes_keep(tile_max, reference, scale_log2, threshold);
        }
        const float new_max = max_nan(row_max[r], tile_max);
        // A row that has seen only -inf scores so far has nothing to accumulate: its weights
        // must be exp2(-inf) = 0 and its O scale 1, not exp2(-inf + inf) = NaN.
        const bool nothing_yet = new_max == neg_inf();
        scale_o[r] = nothing_yet ? 1.f : fast_exp2((row_max[r] - new_max) * scale_log2);
        row_max[r] = new_max;
        const float offset = nothing_yet ? 0.f : new_max * scale_log2;
        float part_sum[4] = {0.f, 0.f, 0.f, 0.f};
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tSrS) / 4; ++nb) {
          CUTLASS_PRAGMA_UNROLL
          for (int c = 0; c < 2; ++c) {
            float& s = tSrS(nb * 4 + 2 * r + c);
            s = fast_exp2(fmaf(s, scale_log2, -offset));
            part_sum[(nb % 2) * 2 + c] += s;
          }
        }
        const float sum = (part_sum[0] + part_sum[1]) + (part_sum[2] + part_sum[3]);
        row_sum[r] = row_sum[r] * scale_o[r] + sum;
      }
      if (skipping) {
        // The tile is kept when any valid row votes keep. Each warp collects its votes by visit
        // position in a register and ORs them into shared memory once per 32 positions (and
        // once at the end of the work tile); the skip-state warp maps positions to tiles.
        if (__any_sync(0xffffffffu, vote)) position_votes |= 1u << (position & 31);
        if ((position & 31) == 31) flush_votes(position);
      }
    };
    auto convert_p = [&](auto const& tSrS) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(raw_pointer_cast(tOrP.data()));
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(tSrS) / 2; ++i) dst[i] = pack2<Element>(tSrS(2 * i), tSrS(2 * i + 1));
    };
    auto rescale_o = [&](float const (&scale_o)[2]) {
      // Past the first tiles a row's max rarely grows, so most tiles leave every factor of the
      // warp at 1: skipping the 64 multiplies then saves issue slots that the softmax needs
      // (measured +3 % dense at L = 32760 on an H200).
      if (__all_sync(0xffffffffu, scale_o[0] == 1.f && scale_o[1] == 1.f)) return;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(tOrO); ++i) tOrO(i) *= scale_o[(i / 2) % 2];
    };

    // O's pending rescale: the factor from the softmax of the tile whose P waits for its PV. It is
    // applied right after the next QK^T is issued, while the tensor cores run it, instead of
    // between the PV's completion and the next issue (with the unit skip in rescale_o this
    // placement measured 2 % faster on an H200; bench/NOTES.md, run 5).
    float scale_o[2];

    // Its Q buffer.
    const int32_t visited = shared.visit_count[list_slot];
    const int16_t* list = shared.visit_list[list_slot];
    const int q_buffer = iteration & 1;
    cutlass::arch::ClusterTransactionBarrier::wait(&shared.q_full[q_buffer], (iteration >> 1) & 1);
    Tensor tSrQ_tile = tSrQ(_, _, _, q_buffer);
    if (visited > 0) {
      {
        const int32_t tile = list[0];
        Tensor tSrS = partition_fragment_C(tiled_mma_qk, select<0, 1>(typename Traits::TileShapeQK{}));
        pipeline_k.consumer_wait(read);
        // The first QK^T and the last PV take turns too, so the two warpgroups keep alternating
        // across work tiles instead of issuing together at each work tile's start (+2-3 % sparse
        // at (8192, 40) on H100, NOTES run 27).
        wait_turn();
        wg_gemm<true, -1>(tiled_mma_qk, tSrQ_tile, tSrK(_, _, _, read.index()), tSrS);
        pass_turn();
        warpgroup_wait<0>();
        pipeline_k.consumer_release(read);
        softmax_tile(tSrS, tile, 0, scale_o);  // scale_o then multiplies O = 0: harmless
        convert_p(tSrS);
      }
      for (int32_t i = 1; i < visited; ++i) {
        const int32_t tile = list[i];
        PipelineState read_v = read;
        ++read;
        Tensor tSrS = partition_fragment_C(tiled_mma_qk, select<0, 1>(typename Traits::TileShapeQK{}));
        pipeline_k.consumer_wait(read);
        wait_turn();
        wg_gemm<true, -1>(tiled_mma_qk, tSrQ_tile, tSrK(_, _, _, read.index()), tSrS);
        rescale_o(scale_o);  // O is idle: the last PV completed at the previous wait<0>
        pipeline_v.consumer_wait(read_v);
        wg_gemm<false, -1>(tiled_mma_pv, tOrP, tOrV(_, _, _, read_v.index()), tOrO);
        pass_turn();
        warpgroup_wait<1>();
        pipeline_k.consumer_release(read);
        softmax_tile(tSrS, tile, i, scale_o);
        warpgroup_wait<0>();
        pipeline_v.consumer_release(read_v);
        convert_p(tSrS);
      }
      if (skipping) flush_votes(visited - 1);
      // The visit list and the votes are done with: the producer may write out and refill the
      // slot. (The Q buffer is not: the epilogue stages O in it.)
      cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[list_slot]);
      rescale_o(scale_o);
      pipeline_v.consumer_wait(read);
      wait_turn();
      wg_gemm<false, -1>(tiled_mma_pv, tOrP, tOrV(_, _, _, read.index()), tOrO);
      pass_turn();
      warpgroup_wait<0>();
      pipeline_v.consumer_release(read);
      ++read;
    } else {
      cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[list_slot]);
    }

    // ---------------------------------- epilogue ------------------------------------------
    float inv_sum[2];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      float sum = row_sum[r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      // A row whose tiles were all skipped: out 0, lse -inf (never NaN).
      inv_sum[r] = sum == 0.f ? 0.f : 1.f / sum;
      if (row_valid[r] && (lane % 4) == 0) {
        if (params.lse != nullptr) {
          const float lse = sum == 0.f ? neg_inf() : row_max[r] * plan.scale + logf(sum);
          params.lse[w.b * params.lse_stride_b + w.h * params.lse_stride_h + global_row[r] * params.lse_stride_l] = lse;
        }
        if (skipping && previous_criterion)
          params.row_max[int64_t(w.bh) * params.len_q + global_row[r]] = row_max[r];
      }
    }
    // Row r's pair of O values in key-column block nb, normalized and packed for out.
    auto normalized_pair = [&](int r, int nb) {
      return pack2<Element>(tOrO(nb * 4 + 2 * r) * inv_sum[r], tOrO(nb * 4 + 2 * r + 1) * inv_sum[r]);
    };
    if (params.store_out_with_tma) {
      // O goes into this warpgroup's rows of the Q buffer (its last QK^T has read them; the other
      // warpgroup's QK^T reads only its own rows) for the store warp's TMA store. The swizzled Q
      // layout keeps these writes free of bank conflicts and is the layout the TMA reads. (Storing
      // from registers costs 64 half-sector stores per thread, ~1 µs per work tile: NOTES run 13.)
      Tensor sO = sQ(_, _, q_buffer);
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tOrO) / 4; ++nb)
          *reinterpret_cast<uint32_t*>(&sO(local_row0 + 8 * r, nb * 8 + col_in_quad)) = normalized_pair(r, nb);
      }
      // These writes (generic proxy) before the TMA's reads (async proxy) of them.
      cutlass::arch::fence_view_async_shared();
    } else {
      Element* out = static_cast<Element*>(params.out) + w.b * params.out_stride_b + w.h * params.out_stride_h;
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (!row_valid[r]) continue;
        Element* out_row = out + int64_t(global_row[r]) * params.out_stride_l + col_in_quad;
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tOrO) / 4; ++nb) *reinterpret_cast<uint32_t*>(out_row + nb * 8) = normalized_pair(r, nb);
      }
    }
    cutlass::arch::ClusterBarrier::arrive(&shared.o_staged[q_buffer]);
  }
}

}  // namespace liteattn::sm90

// Compile-time configuration of the Hopper kernel (tile shapes, layouts, TMA and MMA types,
// shared storage), its parameters, and the CTA view whose member functions are the warp roles.
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
#include "cuda/skip_state_pointers.hpp"
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
  cuda::SkipStatePointers state;  // only touched when plan.skipping
  // Skipping calls hand out work tiles dynamically: CTA b runs work tile b (position b) first, then
  // takes its next positions from this per-call counter (the word after the kept counts, set past
  // the first round by the order kernel, read only after griddepcontrol.wait); position p runs
  // work tile work_order[p] (work_order.hpp). Both null: static round robin in index order.
  uint32_t* work_counter;
  const uint32_t* work_order;
  // Order the two consumer warpgroups' GEMM issue (one issues while the other runs softmax).
  bool schedule_warpgroups;
  // out meets the TMA's rules (base and strides multiples of 16 bytes): the consumers stage O in
  // shared memory for the store warp (tma_o). Otherwise they store it from registers.
  bool store_out_with_tma;
};

// Named barriers (ids above CUTLASS's reserved ones; NamedBarrier adds the offset).
// wg_turn + w: consumer warpgroup w may issue its next GEMMs (see the consumer main loop).
enum class Barrier : uint32_t { wg_turn = 0 };

// One CTA's view of the call, shared by its warp roles: the parameters (in parameter space:
// __grid_constant__), the shared storage, the call's sizes and the thread's lane. The roles are
// member functions (producer.cuh, consumer.cuh), so their code names all of these directly.
template <class Traits>
struct Cta {
  using Element = typename Traits::Element;
  using Pipeline = typename Traits::Pipeline;
  using PipelineState = typename Traits::PipelineState;
  // Device code cannot bind a reference to a static member: where a function takes its
  // arguments by reference (make_shape), these go in as values, e.g. int(kHeadDim).
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kMmaThreads = Traits::kMmaThreads;
  static constexpr int kLists = Traits::SharedStorage::kLists;
  static constexpr int kWarp = cutlass::NumThreadsPerWarp;

  Params<Traits> const& params;
  typename Traits::SharedStorage& shared;
  CallPlan const& plan;
  int lane;
  int32_t q_tiles, k_tiles, words;  // query and key tiles per head, mask words per row
  int64_t state_rows;               // skip-state rows: batch x heads x query tiles
  bool skipping;                    // the call reads and writes the skip state

  // The shared-memory tiles as tensors: Q (two buffers), K and V^T (kStages stages each).
  __device__ auto smem_q() const { return make_tensor(make_smem_ptr(shared.q.data()), typename Traits::SmemLayoutQ{}); }
  __device__ auto smem_k() const { return make_tensor(make_smem_ptr(shared.k.data()), typename Traits::SmemLayoutK{}); }
  __device__ auto smem_vt() const {
    return make_tensor(make_smem_ptr(shared.v.data()), typename Traits::SmemLayoutVt{});
  }

  // The warp roles: the producer warpgroup's three warps (producer.cuh) and the consumer
  // warpgroups (consumer.cuh).
  __device__ __forceinline__ void load_warp(Pipeline& pipeline_k, Pipeline& pipeline_v) const;
  __device__ __forceinline__ void skip_state_warp() const;
  __device__ __forceinline__ void store_warp() const;
  __device__ __forceinline__ void consumer_warpgroups(Pipeline& pipeline_k, Pipeline& pipeline_v) const;
};

}  // namespace liteattn::sm90

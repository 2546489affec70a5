"""The drop-in API: LiteAttention (upstream-compatible) and SeqParallelLiteAttention."""
from __future__ import annotations

import warnings
from typing import Dict, Hashable, Optional, Tuple

from ._arrays import lib_of, torch_lib
from ._core import (BACKENDS, CRITERIA, ORDERS, CallOptions, SkipState, SkipStats, check_call, check_cpu_threads,
                    check_cpu_tile, check_option, check_scale, run)
from ._ranges import normalize_ranges
from .schedule import ThresholdSchedule, check_threshold

DEFAULT_THRESHOLD = -10.0
DEFAULT_BRANCH = "default"


class LiteAttention:
    """Temporal sparse attention with a skip state that carries over between calls.

    Upstream-compatible construction and call::

        attn = LiteAttention(enable_skipping=True, threshold=-10.0)
        out = attn(query, key, value)                       # (B, L, H, D) in, (B, L, H, D) out
        out, lse = attn(query, key, value, return_softmax_lse=True)

    Create one instance per attention layer. Arrays may be torch tensors (CPU or CUDA), NumPy
    arrays or CuPy arrays; the output is of the input's kind, on its device.

    Args beyond upstream (keyword only):
        schedule: a ThresholdSchedule (per-step thresholds, warm-up steps); overrides threshold.
        criterion: 'running' (the paper's skip test) or 'previous' (compare with the row's final
            max of the previous call).
        order: key-tile visit order: 'alternate' (default: the direction flips every call),
            'descending' (the paper's v0.2 order) or 'diagonal_first'.
        dense_queries: query token ranges that always run dense (e.g. text tokens).
        auto_step: advance ``step`` by itself (see ``step``); False leaves it to the caller.
        cpu_tile: (rows, cols) tile shape of the CPU reference (default: the GPU kernel's).
        cpu_threads: CPU worker threads (0: all cores).
        backend: 'auto' (default: by the inputs' device: the CPU reference for CPU arrays, 'sm90'
            on compute capability 9.0 unless the shape exceeds its limits, else 'sm80' on GPUs of
            8.0 and newer), or 'cpu', 'sm90' (the Hopper kernel) or 'sm80' (the portable kernel;
            on Hopper a fallback). A backend that cannot serve the inputs' device is a ValueError
            naming backend, at the call. Skip states carry over between backends (same tiles).
    Accepted for upstream compatibility and ignored: max_batch_size (states are sized per
    call), reverse_skip_list. use_int8=True warns and runs in the input dtype.
    """

    def __init__(self, enable_skipping: bool = True, threshold: Optional[float] = DEFAULT_THRESHOLD,
                 max_batch_size: Optional[int] = None, reverse_skip_list: Optional[bool] = None,
                 use_int8: bool = False, *, schedule: Optional[ThresholdSchedule] = None,
                 criterion: str = "running", order: str = "alternate", dense_queries=None,
                 auto_step: bool = True, cpu_tile: Optional[Tuple[int, int]] = None, cpu_threads: int = 0,
                 backend: str = "auto"):
        self._enabled = bool(enable_skipping)
        if schedule is not None:
            if not isinstance(schedule, ThresholdSchedule):
                raise TypeError(f"schedule: expected a ThresholdSchedule, got {type(schedule).__name__}")
            self._schedule = schedule
        else:
            self._schedule = ThresholdSchedule.constant(
                check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold))
        self.criterion = check_option(criterion, CRITERIA, "criterion")
        self.order = check_option(order, ORDERS, "order")
        self.backend = check_option(backend, BACKENDS, "backend")
        self._dense_queries = dense_queries
        self.cpu_tile = check_cpu_tile(cpu_tile)
        self.cpu_threads = check_cpu_threads(cpu_threads)
        if use_int8:
            warnings.warn("LiteAttention(use_int8=True): INT8 QK is not implemented in this build; "
                          "running in the input dtype", RuntimeWarning, stacklevel=2)
        self.auto_step = bool(auto_step)
        self._states: Dict[Hashable, SkipState] = {}
        self._counter = _StepCounter()
        self._ran: set = set()  # branches that already ran at the current step
        self._schedule_tensor = None  # the schedule's thresholds as a torch tensor (torch inputs)
        self._last_branch: Optional[Hashable] = None
        self._options_cache: Dict[tuple, CallOptions] = {}  # see _options

    # --- upstream API -------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The threshold of the current step (log2 units, <= 0)."""
        return self._schedule.threshold(self.step)

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.set_threshold(value)

    def set_threshold(self, threshold: float) -> None:
        """One threshold for every step (replaces a schedule). Must be <= 0."""
        self._schedule = ThresholdSchedule.constant(check_threshold(threshold))
        self._schedule_tensor = None

    def enable_skip_optimization(self, enable: bool = True) -> None:
        """enable=False: plain dense attention; skip states are kept for later."""
        self._enabled = bool(enable)

    @property
    def enable_skipping(self) -> bool:
        return self._enabled

    def reset_skip_state(self, branch: Optional[Hashable] = None) -> None:
        """Resets the skip state of one branch, or of every branch (branch=None), and the step."""
        if branch is None:
            for s in self._states.values():
                s.reset()
            self.step = 0
        elif branch in self._states:
            self._states[branch].reset()

    # --- schedule and step --------------------------------------------------------------
    @property
    def schedule(self) -> ThresholdSchedule:
        return self._schedule

    @schedule.setter
    def schedule(self, schedule: ThresholdSchedule) -> None:
        if not isinstance(schedule, ThresholdSchedule):
            raise TypeError(f"schedule: expected a ThresholdSchedule, got {type(schedule).__name__}")
        self._schedule = schedule
        self._schedule_tensor = None

    @property
    def step(self) -> int:
        """The denoising step: the step of the last call, or the one the next call uses once set.
        With auto_step, a call on a branch that already ran at the current step first advances
        the step; so one call per step, or one call per branch per step (CFG), both count steps.
        Setting it makes the next calls (of every branch) use that step."""
        return self._counter.get()

    @step.setter
    def step(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"step: expected an integer >= 0, got {value!r}")
        self._counter.set(int(value))
        self._ran = set()

    def _advance(self, branch: Hashable) -> None:
        if self.auto_step and branch in self._ran:
            self._counter.add(1)
            self._ran = set()
        self._ran.add(branch)

    def _skip_decision(self, lib, step_key: Hashable):
        """(skipping enabled, threshold) of the call about to run. While torch.compile traces, both
        are 0-dim CPU tensors computed from the step counter tensor, so that the graph neither
        guards on the step nor recompiles when it advances; otherwise Python values."""
        peek = 1 if (self.auto_step and step_key in self._ran) else 0
        if self._counter.tensor is not None and lib is torch_lib() and lib.torch.compiler.is_compiling():
            torch = lib.torch
            if self._schedule_tensor is None:
                self._schedule_tensor = torch.tensor(self._schedule.thresholds, dtype=torch.float32)
            step = self._counter.tensor + peek
            index = step.clamp(max=len(self._schedule.thresholds) - 1)
            return step >= self._schedule.warmup_steps, self._schedule_tensor.gather(0, index.reshape(1)).squeeze(0)
        # Eager torch calls and other array libraries: the same two values as Python numbers (the
        # torch op takes them as cached tensors); the tensor ops above cost tens of µs per call.
        return self._schedule(self._counter.get() + peek)

    # --- statistics ---------------------------------------------------------------------
    @property
    def stats(self) -> SkipStats:
        """Sparsity of the last call's branch: last call, per head, cumulative (copies to host)."""
        return self.stats_for(self._last_branch)

    def stats_for(self, branch: Optional[Hashable] = None) -> SkipStats:
        state = self._states.get(DEFAULT_BRANCH if branch is None else branch)
        return state.stats() if state is not None else SkipStats()

    def state(self, branch: Optional[Hashable] = None) -> Optional[SkipState]:
        """The SkipState of a branch (None before its first skipping call)."""
        return self._states.get(DEFAULT_BRANCH if branch is None else branch)

    @property
    def branches(self):
        return list(self._states)

    # --- the call -----------------------------------------------------------------------
    def __call__(self, query, key, value, scale: Optional[float] = None, return_softmax_lse: bool = False,
                 must_do_list=None, must_skip_list=None, *, branch: Optional[Hashable] = None,
                 dense_queries=None):
        return self._call(query, key, value, scale, return_softmax_lse, must_do_list, must_skip_list,
                          DEFAULT_BRANCH if branch is None else branch, dense_queries, step_key=None)

    forward = __call__

    def _call(self, query, key, value, scale, return_softmax_lse, must_do_list, must_skip_list, branch,
              dense_queries, step_key):
        lib = lib_of(query, "query")
        checked = check_call(lib, query, key, value, self.criterion, self.cpu_tile)
        call_key = checked[1]  # the lengths from the call's state key: a tensor's .shape costs more
        opts = self._options(call_key.len_q, call_key.len_k, scale, must_do_list, must_skip_list, dense_queries)
        if type(branch) is not str and not _hashable(branch):  # str first: the ABC check is slow
            raise TypeError(f"branch: expected a hashable name such as 'cond', got {branch!r}")
        enabled, threshold = self._skip_decision(lib, branch if step_key is None else step_key)
        state = None
        if self._enabled:
            state = self._states.get(branch)
            if state is None:
                state = SkipState()
        else:
            enabled = False  # plain dense attention; the states stay as they are
        out, lse = run(lib, query, key, value, state, opts, enabled, threshold, bool(return_softmax_lse), checked)
        # Only a call that ran changes the instance (a rejected call leaves it as it was).
        if state is not None:
            self._states[branch] = state
        self._advance(branch if step_key is None else step_key)
        self._last_branch = branch
        return (out, lse) if return_softmax_lse else out

    def _options(self, len_q: int, len_k: int, scale, must_do_list, must_skip_list, dense_queries) -> CallOptions:
        """The call's checked CallOptions. Calls without per-call ranges (nearly all: every layer
        and step of a model) reuse one per sequence lengths, scale and the instance's options
        (public attributes, so part of the key): checking and building them again costs about
        1.5 µs per call."""
        cacheable = (must_do_list is None and must_skip_list is None and dense_queries is None
                     and (scale is None or type(scale) is float))
        if cacheable:
            cache_key = (len_q, len_k, scale, self.criterion, self.order, self.cpu_tile, self.cpu_threads,
                         self.backend)
            opts = self._options_cache.get(cache_key)
            if opts is not None:
                return opts
        opts = CallOptions(
            scale=check_scale(scale),
            criterion=self.criterion,
            order=self.order,
            must_do=normalize_ranges(must_do_list, len_k, "must_do_list", "key seq_len"),
            must_skip=normalize_ranges(must_skip_list, len_k, "must_skip_list", "key seq_len"),
            dense_queries=normalize_ranges(self._dense_queries if dense_queries is None else dense_queries, len_q,
                                           "dense_queries", "query seq_len"),
            cpu_tile=self.cpu_tile,
            cpu_threads=self.cpu_threads,
            backend=self.backend,
        )
        for a, b in opts.must_do:
            for c, d in opts.must_skip:
                if a < d and c < b:
                    raise ValueError(f"must_skip_list: range [{c}, {d}) overlaps must_do_list range [{a}, {b})")
        if cacheable:
            if len(self._options_cache) >= 64:
                self._options_cache.clear()
            self._options_cache[cache_key] = opts
        return opts

    def __repr__(self):
        return (f"{type(self).__name__}(enable_skipping={self._enabled}, schedule={self._schedule!r}, "
                f"criterion={self.criterion!r}, order={self.order!r}, backend={self.backend!r}, step={self.step}, "
                f"branches={self.branches})")


def _hashable(name) -> bool:
    """Whether name can key a dict, without calling hash() (which torch.compile cannot trace): a
    tuple is hashable only when its items are."""
    if isinstance(name, tuple):
        return all(_hashable(x) for x in name)
    return isinstance(name, Hashable)


class _StepCounter:
    """The step counter: a 0-dim int64 CPU torch tensor where torch is installed (mutated in
    place, so torch.compile traces its updates instead of guarding on its value), else an int.
    Eager code reads and writes the tensor through a NumPy view of its memory: a torch op on it
    costs several microseconds per call, a NumPy access well under one."""

    def __init__(self):
        t = torch_lib()
        self.tensor = self._view = None
        if t is not None:
            with t.torch.inference_mode(False):  # updated in place by later calls, in any mode
                self.tensor = t.torch.zeros((), dtype=t.torch.int64)
            self._view = self.tensor.numpy()
        self.value = 0

    def _traced(self) -> bool:
        return self.tensor is not None and torch_lib().torch.compiler.is_compiling()

    # Copies and pickles carry the value; the view must alias the copy's own tensor.
    def __getstate__(self):
        return {"value": self.get()}

    def __setstate__(self, state):
        self.__init__()
        self.set(state["value"])

    def get(self) -> int:
        if self.tensor is None:
            return self.value
        return int(self.tensor) if self._traced() else int(self._view)

    def set(self, value: int) -> None:
        if self.tensor is None:
            self.value = value
        elif self._traced():
            self.tensor.fill_(value)
        else:
            self._view[()] = value

    def add(self, n: int) -> None:
        if self.tensor is None:
            self.value += n
        elif self._traced():
            self.tensor.add_(n)
        else:
            self._view[()] += n


class SeqParallelLiteAttention(LiteAttention):
    """KV-split (ring / sequence) parallelism: one skip state per KV split, results merged by LSE.

    Upstream-compatible call, one split at a time (e.g. one per rank)::

        attn = SeqParallelLiteAttention(num_nodes=8)
        out = attn(query, key_split, value_split, split_idx)            # partial result
        out, lse = attn(query, key_split, value_split, split_idx, return_softmax_lse=True)

    Partial results over disjoint key sets combine with ``merge_attention(outs, lses)``.
    ``attn.all_splits(query, key, value)`` runs every split locally and merges.
    """

    def __init__(self, num_nodes: Optional[int] = None, enable_skipping: bool = True,
                 threshold: Optional[float] = DEFAULT_THRESHOLD, max_batch_size: Optional[int] = None,
                 use_int8: bool = False, *, num_splits: Optional[int] = None, **kwargs):
        n = num_splits if num_splits is not None else num_nodes
        if n is None:
            raise TypeError("SeqParallelLiteAttention: expected num_nodes (or num_splits)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_splits: expected an integer >= 1, got {n!r}")
        super().__init__(enable_skipping=enable_skipping, threshold=threshold, max_batch_size=max_batch_size,
                         use_int8=use_int8, **kwargs)
        self.num_splits = n

    @property
    def num_nodes(self) -> int:
        return self.num_splits

    def __call__(self, query, key, value, split_idx: int, scale: Optional[float] = None,
                 return_softmax_lse: bool = False, must_do_list=None, must_skip_list=None, *,
                 branch: Optional[Hashable] = None, dense_queries=None):
        if isinstance(split_idx, bool) or not isinstance(split_idx, int) or not 0 <= split_idx < self.num_splits:
            raise ValueError(f"split_idx: expected an integer in [0, {self.num_splits}), got {split_idx!r}")
        b = DEFAULT_BRANCH if branch is None else branch
        return self._call(query, key, value, scale, return_softmax_lse, must_do_list, must_skip_list,
                          (b, split_idx), dense_queries, step_key=(b, split_idx))

    forward = __call__

    # A split's state is keyed (branch, split_idx); a tuple branch without split_idx is such a key.
    def _split_key(self, branch, split_idx):
        if split_idx is None and isinstance(branch, tuple):
            return branch
        return (DEFAULT_BRANCH if branch is None else branch, 0 if split_idx is None else split_idx)

    def stats_for(self, branch: Optional[Hashable] = None, split_idx: Optional[int] = None) -> SkipStats:
        return super().stats_for(self._split_key(branch, split_idx))

    def state(self, branch: Optional[Hashable] = None, split_idx: Optional[int] = None) -> Optional[SkipState]:
        """The SkipState of one split of a branch (split 0 unless split_idx is given)."""
        return super().state(self._split_key(branch, split_idx))

    def reset_skip_state(self, branch: Optional[Hashable] = None, split_idx: Optional[int] = None) -> None:
        """Resets every state and the step (branch=None), every split of a branch, or one split."""
        if branch is None and split_idx is None:
            super().reset_skip_state()
        elif split_idx is None and not isinstance(branch, tuple):
            for i in range(self.num_splits):
                super().reset_skip_state((branch, i))
        else:
            super().reset_skip_state(self._split_key(branch, split_idx))

    def all_splits(self, query, key, value, scale: Optional[float] = None, return_softmax_lse: bool = False, *,
                   branch: Optional[Hashable] = None):
        """Splits key/value along the sequence into num_splits contiguous parts, runs each with its
        own state, and merges the partial results by their LSE."""
        from .merge import merge_attention

        Lk = key.shape[1]
        if Lk < self.num_splits:
            raise ValueError(f"key: expected seq_len >= num_splits = {self.num_splits}, got {Lk}")
        bounds = [Lk * i // self.num_splits for i in range(self.num_splits + 1)]
        outs, lses = [], []
        for i in range(self.num_splits):
            o, l = self(query, key[:, bounds[i]:bounds[i + 1]], value[:, bounds[i]:bounds[i + 1]], i, scale,
                        True, branch=branch)
            outs.append(o)
            lses.append(l)
        return merge_attention(outs, lses, return_lse=return_softmax_lse)


def find_lite_attention(model) -> list:
    """Every LiteAttention held by a torch module tree (as an attribute of any submodule), or by
    a list / dict of them; in attribute order, each once."""
    found, seen = [], set()

    def visit(obj):
        if isinstance(obj, LiteAttention):
            if id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
        elif isinstance(getattr(obj, "lite_attention", None), LiteAttention):  # e.g. a diffusers processor
            visit(obj.lite_attention)

    modules = model.modules() if hasattr(model, "modules") and callable(model.modules) else [model]
    for m in modules:
        if isinstance(m, (LiteAttention, list, tuple, dict)):
            visit(m)
        else:
            for v in vars(m).values():
                visit(v)
    return found


def set_step(model, step: int) -> None:
    """Sets the denoising step of every LiteAttention in a model (call once per step, before the
    CFG passes)."""
    for attn in find_lite_attention(model):
        attn.step = step


def reset_skip_states(model) -> None:
    """Resets the skip states (every branch) and steps of every LiteAttention in a model."""
    for attn in find_lite_attention(model):
        attn.reset_skip_state()

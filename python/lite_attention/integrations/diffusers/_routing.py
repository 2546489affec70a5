"""How a wrapped processor's attention call reaches its LiteAttention. For each wrapped processor
class there is one routed copy of its __call__, whose globals (a module registered under its own
name, so that torch.compile resolves them as it runs them) name a router for diffusers'
dispatch_attention_fn, or a torch.nn.functional (F) whose scaled_dot_product_attention is routed.
The installed processor sets itself as CURRENT.processor around the call, and the router hands
the call to that processor. Nothing in diffusers' or torch's modules changes."""
from __future__ import annotations

import dis
import sys
import threading
import types
import weakref
from typing import Callable, Optional, Tuple

import torch  # (diffusers needs it)

from .._collectives import gather_sequence, heads_to_sequence, sequence_to_heads


class _Current:
    """What runs now: the branch that calls run on (set by branch() and by the trajectory hooks;
    None: the LiteAttention's default) and the installed processor whose call is running, with
    the attention calls it has made. Plain attributes, not context variables, so that
    torch.compile traces them; they are therefore process-wide, not per thread."""

    branch = None
    processor = None
    calls = 0
    owner = None  # the thread inside an installed model or a branch() context (eager), else None


CURRENT = _Current()

_OWNER_LOCK = threading.Lock()


UNCLAIMED = object()  # what claim() returns in compiled code, which cannot take the lock


def claim():
    """Makes this thread CURRENT's owner (eager code: a model call with installed processors, its
    trajectory hook, a branch() context) and returns the owner before it, for release(). CURRENT
    is process-wide, so that torch.compile reads it: a thread that claims it while another one
    owns it would run on the other's branch and processors, and is refused instead."""
    if torch.compiler.is_compiling():
        return UNCLAIMED
    me = threading.get_ident()
    with _OWNER_LOCK:
        owner = CURRENT.owner
        if owner not in (None, me):
            raise RuntimeError("LiteAttention's diffusers integration runs one pipeline at a time per process; "
                               "another thread is inside an installed model or a branch() context")
        CURRENT.owner = me
    return owner


def release(previous) -> None:
    """Gives CURRENT back to the owner claim() returned."""
    if previous is not UNCLAIMED:
        CURRENT.owner = previous


# The text placement of a call with encoder_hidden_states whose processor is not one of the known
# joint-attention processors: cross-attention (the text is the keys) is fine, joint attention in
# an unknown layout is refused.
UNKNOWN_PLACEMENT = "unknown"


# The last mask read: (a weak reference to the tensor it was read for, that tensor's version, the
# mask's shape, what it keeps or None). A transformer passes one key-padding mask object to every
# layer of a forward pass, so such a mask is read (a device-to-host copy) once per pass. A
# processor that builds a new mask in every call from its own attention_mask argument (HunyuanVideo
# 1.5's) is keyed by that argument instead, which the transformer passes to every layer.
_last_mask: tuple = (lambda: None, -1, None, None)


def _kept_prefixes(mask, batch: int, len_q: int, len_k: int, source=None) -> Optional[Tuple[int, int]]:
    """(n_q, n_k) when the boolean mask lets query rows 0 .. n_q - 1 attend to exactly keys
    0 .. n_k - 1 and the other rows to nothing, the same for every batch row; else None. Two forms:
    a key-padding mask, (B or 1, 1, ..., 1, Lk), where every row attends (n_q = len_q); and a
    per-row mask (B or 1, 1, ..., Lq, Lk) such as HunyuanVideo 1.5's, which pads the queries with
    the keys (two passes over its Lq x Lk booleans). source: the tensor the mask is a function of,
    together with its shape (the processor's attention_mask argument), when it is known to be one;
    the answer is then reused while source is the same tensor, unchanged."""
    if mask.dtype != torch.bool or mask.dim() < 2 or mask.shape[-1] != len_k or mask.shape[0] not in (1, batch):
        return None
    if all(d == 1 for d in mask.shape[1:-1]):
        rows = 1
    elif mask.shape[-2] == len_q and all(d == 1 for d in mask.shape[1:-2]):
        rows = len_q
    else:
        return None
    global _last_mask
    key = source if isinstance(source, torch.Tensor) else mask
    # Inference tensors (torch.inference_mode) have no version counter: the object alone keys them.
    version = None if key.is_inference() else key._version
    seen, seen_version, seen_shape, kept = _last_mask
    if seen() is key and seen_version == version and seen_shape == mask.shape:
        return _with_rows(kept, len_q)
    kept = _read_kept(mask.reshape(mask.shape[0], rows, len_k))
    _last_mask = (weakref.ref(key), version, mask.shape, kept)
    return _with_rows(kept, len_q)


def _read_kept(mask) -> Optional[Tuple[Optional[int], int]]:
    """What a (B, rows, Lk) boolean mask keeps: (query rows kept, or None for every row of a
    key-padding mask (rows = 1); keys kept), or None when it is not such a prefix mask. Reads the
    mask to the host: the call waits for the GPU."""
    rows = mask.shape[1]
    row_counts = mask.sum(dim=2)
    kept_rows, kept_columns = row_counts > 0, mask.any(dim=1)
    n_q, n_k = kept_rows.sum(dim=1), kept_columns.sum(dim=1)

    def is_prefix(kept, n):
        return (kept == (torch.arange(kept.shape[1], device=kept.device) < n[:, None])).all(dim=1)

    # Rows and columns kept form prefixes, and every kept row keeps every kept column.
    exact = is_prefix(kept_rows, n_q) & is_prefix(kept_columns, n_k) & (row_counts.sum(dim=1) == n_q * n_k)
    queries, keys, exact = torch.stack([n_q, n_k, exact.to(n_q.dtype)]).tolist()
    if all(exact) and len(set(queries)) == 1 and len(set(keys)) == 1 and queries[0] > 0 and keys[0] > 0:
        return (None if rows == 1 else queries[0], keys[0])
    return None


def _with_rows(kept, len_q: int) -> Optional[Tuple[int, int]]:
    """(n_q, n_k) from what a mask keeps, for a call with len_q query rows."""
    return None if kept is None else (len_q if kept[0] is None else kept[0], kept[1])


def _route(query, key, value, attn_mask, dropout_p, is_causal, scale, other_arguments: bool, parallel_config=None):
    """The output of the running processor's LiteAttention for (B, L, H, D) tensors, or None when
    the call is not one it takes (causal, dropout, a mask other than padding, arguments
    LiteAttention does not have, context parallelism over joint attention or uneven shards)."""
    processor = CURRENT.processor
    if processor is None:  # (the routed __call__ run outside its processor)
        return None
    if CURRENT.calls:
        raise RuntimeError(f"processor: {type(processor.inner).__name__} made a second attention call in one pass "
                           "(e.g. Wan's image context); a LiteAttention keeps one state per module and branch, so "
                           "install(select=...) must pick modules whose processor makes one (self-attention)")
    CURRENT.calls = 1
    if is_causal or dropout_p or other_arguments:
        return None
    text = processor._call_text
    if text is not None and text[0] == UNKNOWN_PLACEMENT and parallel_config is None:
        tokens = processor._call_tokens
        if tokens is not None and query.shape[1] > tokens:
            raise RuntimeError(f"processor: {type(processor.inner).__name__} puts its {text[1]} text tokens into the "
                               "attention's sequence (joint attention) in a layout LiteAttention does not know, so "
                               "their tiles could be skipped; leave this module out with install(select=...)")
        text = None  # cross-attention: the text tokens are the keys, every one attended as usual
    if parallel_config is not None:
        groups = _context_parallel_groups(parallel_config)
        # Under diffusers' context parallelism the rank holds a sequence shard: the text's
        # positions and a padding mask are per shard, so joint attention and masks fall through.
        if groups is None or text is not None or attn_mask is not None:
            return None
        (ulysses, ulysses_ranks), _ = groups
        if query.shape[2] % ulysses_ranks or key.shape[2] % ulysses_ranks:
            return None
        return _context_parallel_attend(processor, query, key, value, scale, *groups)
    kept = None
    if attn_mask is not None:
        kept = _kept_prefixes(attn_mask, key.shape[0], query.shape[1], key.shape[1], processor._call_mask_source)
        if kept is None:
            return None
    return processor.attend(query, key, value, scale, kept=kept, text=text)


def _context_parallel_groups(parallel_config):
    """((Ulysses group, its ranks), (ring group, its ranks)) of diffusers' context parallelism (a
    group of one rank: None, 1), or None for what LiteAttention does not run (the uneven-shard
    'anything' variants, tensor parallelism alone)."""
    config = getattr(parallel_config, "context_parallel_config", None)
    if (config is None or getattr(config, "ulysses_anything", False) or getattr(config, "ring_anything", False)
            or config._mesh is None):
        return None
    ulysses = (config._ulysses_mesh.get_group(), config.ulysses_degree) if config.ulysses_degree > 1 else (None, 1)
    ring = (config._ring_mesh.get_group(), config.ring_degree) if config.ring_degree > 1 else (None, 1)
    return ulysses, ring


def _context_parallel_attend(processor, query, key, value, scale, ulysses, ring):
    """diffusers' context-parallel attention with LiteAttention inside, for (B, L/P, H, D) shards
    held in the order of diffusers' (ring, Ulysses) mesh. Ulysses: an all-to-all gives the rank
    the sequence of its Ulysses group for H/U heads; ring: the keys and values of every ring rank
    are gathered (diffusers' ring also gathers them all) and the rank's queries attend to the
    whole sequence. The rank's LiteAttention keeps the skip states of its query rows and heads."""
    (ulysses_group, ulysses_ranks), (ring_group, ring_ranks) = ulysses, ring
    if ulysses_ranks > 1:
        query, key, value = (sequence_to_heads(x, ulysses_ranks, ulysses_group) for x in (query, key, value))
    if ring_ranks > 1:
        key, value = (gather_sequence(x, ring_ranks, ring_group) for x in (key, value))
    out = processor.attend(query, key, value, scale)
    return heads_to_sequence(out, ulysses_ranks, ulysses_group) if ulysses_ranks > 1 else out


def _routed_dispatch(original: Callable) -> Callable:
    """diffusers' dispatch_attention_fn ((B, L, H, D) tensors), routed."""
    def dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                              enable_gqa=False, attention_kwargs=None, **kwargs):
        out = _route(query, key, value, attn_mask, dropout_p, is_causal, scale, bool(attention_kwargs),
                     kwargs.get("parallel_config"))
        if out is None:
            out = original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                           scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)
        return out

    return dispatch_attention_fn


def _routed_functional(functional, name: str):
    """torch.nn.functional for a processor that calls F.scaled_dot_product_attention ((B, H, L, D)
    tensors) directly (CogVideoX's): a module with every name torch's own, and that one routed."""
    def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                     enable_gqa=False):
        out = None
        if query.dim() == 4:  # (LiteAttention takes grouped key/value heads as they are: enable_gqa)
            out = _route(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask, dropout_p,
                         is_causal, scale, False)
        if out is None:
            extra = {"enable_gqa": True} if enable_gqa else {}  # (an argument only torch >= 2.5 has)
            return functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                           dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                                                           **extra)
        return out.transpose(1, 2)

    routed = _module(name, vars(functional))
    routed.scaled_dot_product_attention = scaled_dot_product_attention
    return routed


def _module(name: str, namespace: dict) -> types.ModuleType:
    """A module named name holding namespace's names, registered in sys.modules."""
    module = types.ModuleType(name)
    module.__dict__.update({k: v for k, v in namespace.items() if k not in ("__name__", "__spec__", "__loader__")})
    module.__name__ = name
    sys.modules[name] = module
    return module


def _loads(code, name: str, attribute: Optional[str] = None) -> bool:
    """Whether code loads the global name (followed by .attribute when given)."""
    previous = None
    for instruction in dis.get_instructions(code):
        if attribute is None and instruction.opname == "LOAD_GLOBAL" and instruction.argval == name:
            return True
        if (attribute is not None and previous is not None and previous.opname == "LOAD_GLOBAL"
                and previous.argval == name and instruction.argval == attribute):
            return True
        previous = instruction
    return False


def routed_call(inner_class: type) -> Callable:
    """inner_class.__call__ (a plain function: self first) with its attention call, through
    diffusers' dispatch_attention_fn or torch's F.scaled_dot_product_attention, routed to
    CURRENT.processor."""
    call = inner_class.__call__
    code, scope = getattr(call, "__code__", None), getattr(call, "__globals__", {})
    name = f"{__name__}.routed.{inner_class.__module__}.{inner_class.__qualname__}"
    dispatch, functional = scope.get("dispatch_attention_fn"), scope.get("F")
    if code is not None and _loads(code, "dispatch_attention_fn") and callable(dispatch):
        module = _module(name, scope)
        module.dispatch_attention_fn = _routed_dispatch(dispatch)
    elif (code is not None and _loads(code, "F", "scaled_dot_product_attention")
          and hasattr(functional, "scaled_dot_product_attention")):
        module = _module(name, scope)
        module.F = _routed_functional(functional, name + ".F")
    else:
        raise TypeError(f"inner: {inner_class.__name__}.__call__ calls neither diffusers' dispatch_attention_fn nor "
                        "torch's F.scaled_dot_product_attention itself; this processor cannot be wrapped")
    routed = types.FunctionType(code, module.__dict__, call.__name__, call.__defaults__, call.__closure__)
    routed.__kwdefaults__ = call.__kwdefaults__
    return routed

"""The processor installed on an attention module: wraps diffusers' own and runs the core
attention call on the module's LiteAttention (text tokens of joint attention kept dense)."""
from __future__ import annotations

import inspect
from typing import Optional, Tuple

import torch  # (diffusers needs it)

from ..._ranges import normalize_ranges
from ...attention import LiteAttention
from ._routing import CURRENT, UNKNOWN_PLACEMENT, claim, release, routed_call

# Processors of joint attention, by class name: where they put the text tokens
# (encoder_hidden_states) in the sequence, before the video tokens or after them.
_TEXT_PLACEMENT = {
    "HunyuanVideoAttnProcessor2_0": "last",
    "HunyuanVideo15AttnProcessor2_0": "last",
    "CogVideoXAttnProcessor2_0": "first",
    "FusedCogVideoXAttnProcessor2_0": "first",
}

# Processors that build their attention call's mask from their own attention_mask argument (a
# per-token mask the transformer passes to every layer) and the sequence length alone, anew in
# every call: what the mask keeps is read once per such argument instead of in every layer.
_MASK_FROM_ARGUMENT = frozenset({"HunyuanVideo15AttnProcessor2_0"})


class LiteAttentionProcessor:
    """Wraps a diffusers attention processor; its core attention call runs on `lite_attention`.

    An instance is of a subclass made for the inner processor's class, whose __call__ declares
    the inner one's parameters: diffusers' Attention passes a processor only the keyword arguments
    its __call__ declares (HunyuanVideo's rotary embedding among them)."""

    def __new__(cls, inner, lite_attention: Optional[LiteAttention] = None, **lite_attention_kwargs):
        if not callable(inner):
            raise TypeError(f"inner: expected a diffusers attention processor, got {type(inner).__name__}")
        if isinstance(inner, torch.nn.Module):
            raise TypeError(f"inner: {type(inner).__name__} is a torch.nn.Module (a processor with weights, such as an "
                            "IP-Adapter's); wrapping it would take its weights out of the model")
        return object.__new__(_wrapper_class(type(inner)) if cls is LiteAttentionProcessor else cls)

    def __init__(self, inner, lite_attention: Optional[LiteAttention] = None, **lite_attention_kwargs):
        self.inner = inner
        self.lite_attention = lite_attention if lite_attention is not None else LiteAttention(**lite_attention_kwargs)
        self._call_text: Optional[Tuple[str, int]] = None  # the running call's text (see _text)
        self._call_tokens: Optional[int] = None  # the running call's hidden_states tokens
        self._call_mask_source = None  # the running call's attention_mask argument (_MASK_FROM_ARGUMENT)
        self._recorders: list = []  # record(): each called with every call's (q, k, v) and branch

    # Copies and pickles (copy.deepcopy(model), torch.save(model)) are built anew from the inner
    # processor and the LiteAttention (copied with its own states).
    def __reduce__(self):
        return LiteAttentionProcessor, (self.inner, self.lite_attention)

    def _run(self, call, attn, hidden_states, *args, **kwargs):
        """The inner processor's routed __call__, with this processor as the one its attention
        call goes to."""
        self._call_text = self._text(args, kwargs)
        self._call_mask_source = (_argument(args, kwargs, "attention_mask", self._mask_position)
                                  if self._mask_from_argument else None)
        self._call_tokens = int(hidden_states.shape[1]) if hidden_states.dim() == 3 else None
        owner = claim()
        outer = (CURRENT.processor, CURRENT.calls)
        CURRENT.processor, CURRENT.calls = self, 0
        try:
            return call(self.inner, attn, hidden_states, *args, **kwargs)
        finally:
            CURRENT.processor, CURRENT.calls = outer
            release(owner)

    # Set on each subclass from its inner class: where encoder_hidden_states and attention_mask
    # sit among the arguments after (attn, hidden_states) by the inner __call__'s signature (None:
    # not a parameter), where the class puts the text (_TEXT_PLACEMENT, else UNKNOWN_PLACEMENT)
    # and whether it is in _MASK_FROM_ARGUMENT.
    _text_position: Optional[int] = None
    _mask_position: Optional[int] = None
    _text_placement: str = UNKNOWN_PLACEMENT
    _mask_from_argument: bool = False

    def _text(self, args, kwargs) -> Optional[Tuple[str, int]]:
        """(where the text sits, its token count) when the call has encoder_hidden_states: "first"
        or "last" for the processors of joint attention in _TEXT_PLACEMENT, else UNKNOWN_PLACEMENT
        (cross-attention, or joint attention in a layout this module does not know)."""
        text = _argument(args, kwargs, "encoder_hidden_states", self._text_position)
        if not hasattr(text, "shape") or len(text.shape) < 2:
            return None
        return self._text_placement, int(text.shape[1])

    def attend(self, query, key, value, scale=None, kept: Optional[Tuple[int, int]] = None,
               text: Optional[Tuple[str, int]] = None):
        """Attention over (B, L, H, D) tensors. kept = (n_q, n_k): query rows 0 .. n_q - 1 attend
        to keys 0 .. n_k - 1, and the rows after n_q attend to no key and come out as zeros (what
        torch's scaled_dot_product_attention gives such rows); default: all rows, all keys. With
        text = (placement, n), the first or last n positions of the sequence are text tokens:
        their query rows run dense and their key tiles are never skipped."""
        len_q = query.shape[1]
        n_q, n_k = kept if kept is not None else (len_q, key.shape[1])
        dense_queries, must_do = _text_ranges(len_q, text, n_q, n_k)
        own = self.lite_attention._dense_queries  # the instance's dense_queries, kept beside the text's
        if dense_queries is not None and own is not None:
            own = [(s, min(e, n_q)) for s, e in normalize_ranges(own, len_q, "dense_queries", "query seq_len")
                   if s < n_q]  # the query rows that attend
            dense_queries = _union(own, dense_queries)
        cast = query.is_cuda and query.dtype not in _GPU_DTYPES
        dtype = query.dtype
        if cast:
            query, key, value = (x.to(torch.bfloat16) for x in (query, key, value))
        query, key, value = query[:, :n_q], key[:, :n_k], value[:, :n_k]
        for recorder in self._recorders:
            recorder(query, key, value, CURRENT.branch)
        out = self.lite_attention(query, key, value, scale=scale, branch=CURRENT.branch, must_do_list=must_do,
                                  dense_queries=dense_queries)
        if n_q < len_q:
            out = torch.cat([out, out.new_zeros((out.shape[0], len_q - n_q) + tuple(out.shape[2:]))], dim=1)
        return out.to(dtype) if cast else out

    # Settings diffusers writes on a processor (the attention backend; the parallel config when
    # context parallelism is enabled, which the inner call passes to its attention call) are the
    # inner processor's; other attributes it reads are too.
    _attention_backend = property(lambda self: self.inner._attention_backend,
                                  lambda self, value: setattr(self.inner, "_attention_backend", value))
    _parallel_config = property(lambda self: self.inner._parallel_config,
                                lambda self, value: setattr(self.inner, "_parallel_config", value))

    def __getattr__(self, name):
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)  # (protocols such as __deepcopy__ are this class's)
        return getattr(self.inner, name)


_OWN = ("inner", "lite_attention", "_call_text", "_call_tokens", "_call_mask_source", "_recorders")  # never the inner's
_WRAPPERS: dict = {}


def _wrapper_class(inner_class: type) -> type:
    """The LiteAttentionProcessor subclass for processors of inner_class (made once): its __call__
    declares inner_class.__call__'s parameters and runs that __call__'s routed copy."""
    wrapper = _WRAPPERS.get(inner_class)
    if wrapper is None:
        routed = routed_call(inner_class)

        def __call__(self, attn, hidden_states, *args, **kwargs):
            return self._run(routed, attn, hidden_states, *args, **kwargs)

        signature = inspect.signature(inner_class.__call__)
        __call__.__signature__ = signature
        positional = [p.name for p in signature.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][3:]  # after self, attn, hidden_states
        position = {name: positional.index(name) if name in positional else None
                    for name in ("encoder_hidden_states", "attention_mask")}
        wrapper = type(f"LiteAttentionProcessor_{inner_class.__name__}", (LiteAttentionProcessor,),
                       {"__call__": __call__, "__module__": __name__,
                        "_text_position": position["encoder_hidden_states"],
                        "_mask_position": position["attention_mask"],
                        "_text_placement": _TEXT_PLACEMENT.get(inner_class.__name__, UNKNOWN_PLACEMENT),
                        "_mask_from_argument": inner_class.__name__ in _MASK_FROM_ARGUMENT})
        _WRAPPERS[inner_class] = wrapper
    return wrapper


def _argument(args, kwargs, name: str, position: Optional[int]):
    """The call's argument for the inner parameter name (at position among the positional
    arguments after (attn, hidden_states)), or None."""
    value = kwargs.get(name)
    if value is None and position is not None and position < len(args):
        value = args[position]
    return value


def _text_ranges(len_q: int, text: Optional[Tuple[str, int]], n_q: int,
                 n_k: int) -> Tuple[Optional[list], Optional[list]]:
    """(dense query ranges, must-do key ranges) for a sequence of len_q positions with
    text = (placement, n) tokens of text first or last, cut to the n_q query rows and n_k keys
    that attend (the text's padding at the end cut off)."""
    if text is None or text[1] <= 0:
        return None, None
    placement, n = text
    start, stop = (0, n) if placement == "first" else (max(len_q - n, 0), len_q)
    queries, keys = (start, min(stop, n_q)), (start, min(stop, n_k))
    return ([queries] if queries[1] > start else None), ([keys] if keys[1] > start else None)


def _union(a: list, b: list) -> list:
    """The union of two lists of half-open ranges, ascending and merged where they overlap or touch."""
    merged: list = []
    for start, stop in sorted(list(a) + list(b)):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


_GPU_DTYPES = (torch.bfloat16, torch.float16)  # the GPU kernels' types

"""diffusers integration: LiteAttention inside a diffusers transformer (e.g. WanTransformer3DModel).

    import lite_attention as la
    from lite_attention.integrations import diffusers as la_diffusers

    attns = la_diffusers.install(pipe.transformer, threshold=-10.0)   # self-attention layers only
    for i, t in enumerate(timesteps):
        la.set_step(pipe.transformer, i)
        with la_diffusers.branch("cond"):
            noise_cond = pipe.transformer(latents, t, prompt_embeds).sample
        with la_diffusers.branch("uncond"):
            noise_uncond = pipe.transformer(latents, t, negative_prompt_embeds).sample
    la_diffusers.uninstall(pipe.transformer)

The installed processor wraps the module's own diffusers processor: its projections, norms,
rotary embedding and output projection run unchanged; only the core attention call that the
processor makes through diffusers' ``dispatch_attention_fn`` ((B, L, H, D) tensors, not causal,
no context parallelism) goes to the layer's LiteAttention. A boolean key-padding mask (the text
padding of HunyuanVideo's joint attention: every batch row keeps the same first n keys) runs as
attention over those n keys; any other mask, and anything else, falls through to diffusers. One
LiteAttention per attention module, one skip state per branch (CFG pass). float32 inputs on CUDA
run in bfloat16 (the GPU kernel's types) and are cast back.

Joint attention (HunyuanVideo: the text tokens appended to the video tokens in one sequence): the
text's query rows run dense and the text's key tiles are never skipped, so skipping acts on
video-to-video attention only (the text is a small part of the work, and the prompt's hold on
every video token does not depend on how far the tokens are apart).
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
import weakref
from typing import Callable, Dict, Hashable, List, Optional, Tuple

from ..attention import LiteAttention

# (processor, text tokens appended to its sequence) of the attention module running now.
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("lite_attention_processor", default=None)
_BRANCH: contextvars.ContextVar = contextvars.ContextVar("lite_attention_branch", default=None)
_ORIGINALS: Dict[str, Callable] = {}  # module name -> diffusers' dispatch_attention_fn there


@contextlib.contextmanager
def branch(name: Optional[Hashable]):
    """Calls inside run on this branch's skip states (e.g. 'cond', 'uncond')."""
    token = _BRANCH.set(name)
    try:
        yield
    finally:
        _BRANCH.reset(token)


# Processors of joint attention that append the text tokens (encoder_hidden_states) to the
# sequence, by class name.
_TEXT_LAST_PROCESSORS = frozenset({"HunyuanVideoAttnProcessor2_0"})

# The last mask read: (a weak reference to it, its version, the key count it keeps or None). A
# transformer passes one mask object to every layer of a forward pass, so the mask is read (a
# device-to-host copy) once per pass.
_last_mask: tuple = (lambda: None, -1, None)


def _kept_key_prefix(mask, batch: int, len_k: int) -> Optional[int]:
    """n when the boolean mask keeps exactly keys 0 .. n - 1 for every query and batch row (a
    key-padding mask of shape (B or 1, 1, ..., 1, Lk)), else None."""
    import torch

    if (mask.dtype != torch.bool or mask.dim() < 2 or mask.shape[-1] != len_k or mask.shape[0] not in (1, batch)
            or any(d != 1 for d in mask.shape[1:-1])):
        return None
    global _last_mask
    seen, version, n = _last_mask
    if seen() is mask and version == mask._version:
        return n
    rows = mask.reshape(mask.shape[0], len_k)
    kept = rows.sum(dim=1)
    prefix = torch.arange(len_k, device=mask.device) < kept[:, None]
    counts, exact = torch.stack([kept, (rows == prefix).all(dim=1).to(kept.dtype)]).tolist()
    n = counts[0] if all(exact) and len(set(counts)) == 1 and counts[0] > 0 else None
    _last_mask = (weakref.ref(mask), mask._version, n)
    return n


def _routed(original: Callable) -> Callable:
    def dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                              enable_gqa=False, attention_kwargs=None, **kwargs):
        active = _ACTIVE.get()
        kept_keys = key.shape[1]
        if active is not None and attn_mask is not None:
            kept_keys = _kept_key_prefix(attn_mask, key.shape[0], key.shape[1])
        if (active is None or kept_keys is None or is_causal or dropout_p
                or kwargs.get("parallel_config") is not None):
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)
        processor, text_tokens = active
        return processor.attend(query, key, value, scale, kept_keys=kept_keys, text_tokens=text_tokens)

    dispatch_attention_fn.__wrapped__ = original
    dispatch_attention_fn._lite_attention = True
    return dispatch_attention_fn


def _patch(module_name: str) -> None:
    module = sys.modules.get(module_name)
    fn = getattr(module, "dispatch_attention_fn", None) if module is not None else None
    if fn is None:
        raise TypeError(f"processor: {module_name} does not call diffusers' dispatch_attention_fn; "
                        "this processor cannot be wrapped")
    if not getattr(fn, "_lite_attention", False):
        _ORIGINALS[module_name] = fn
        module.dispatch_attention_fn = _routed(fn)


class LiteAttentionProcessor:
    """Wraps a diffusers attention processor; its core attention call runs on `lite_attention`."""

    def __init__(self, inner, lite_attention: Optional[LiteAttention] = None, **lite_attention_kwargs):
        if not callable(inner):
            raise TypeError(f"inner: expected a diffusers attention processor, got {type(inner).__name__}")
        self.inner = inner
        self.lite_attention = lite_attention if lite_attention is not None else LiteAttention(**lite_attention_kwargs)
        _patch(type(inner).__module__)
        # diffusers' Attention passes a processor only the keyword arguments that its __call__
        # declares (HunyuanVideo's rotary embedding among them): declare the inner processor's.
        # (A call goes through the class's __call__; diffusers reads the instance's attribute.)
        def call(attn, hidden_states, *args, **kwargs):
            return LiteAttentionProcessor.__call__(self, attn, hidden_states, *args, **kwargs)

        call.__signature__ = inspect.signature(inner.__call__)
        self.__call__ = call

    def __call__(self, attn, hidden_states, *args, **kwargs):
        token = _ACTIVE.set((self, self._text_tokens(args, kwargs)))
        try:
            return self.inner(attn, hidden_states, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    def _text_tokens(self, args, kwargs) -> int:
        if type(self.inner).__name__ not in _TEXT_LAST_PROCESSORS:
            return 0
        text = kwargs.get("encoder_hidden_states", args[0] if args else None)
        return 0 if text is None else int(text.shape[1])

    def attend(self, query, key, value, scale=None, kept_keys: Optional[int] = None, text_tokens: int = 0):
        """Attention of query over the first kept_keys keys (all by default); with text_tokens,
        the last text_tokens positions of the sequence are text: their query rows run dense and
        their key tiles are never skipped."""
        cast = query.is_cuda and query.dtype not in _GPU_DTYPES
        if cast:
            import torch

            dtype = query.dtype
            query, key, value = (x.to(torch.bfloat16) for x in (query, key, value))
        if kept_keys is not None and kept_keys < key.shape[1]:
            key, value = key[:, :kept_keys], value[:, :kept_keys]
        dense_queries, must_do = _text_ranges(query.shape[1], key.shape[1], text_tokens)
        out = self.lite_attention(query, key, value, scale=scale, branch=_BRANCH.get(), must_do_list=must_do,
                                  dense_queries=dense_queries)
        return out.to(dtype) if cast else out

    def __getattr__(self, name):
        # diffusers reads processor attributes such as _attention_backend; answer for the inner one.
        if name in ("inner", "lite_attention", "__call__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _text_ranges(len_q: int, len_k: int, text_tokens: int) -> Tuple[Optional[list], Optional[list]]:
    """(dense query ranges, must-do key ranges) for a sequence whose last text_tokens positions
    are text; the keys end at len_k (the text's padding cut off)."""
    if text_tokens <= 0:
        return None, None
    start = max(len_q - text_tokens, 0)
    return [(start, len_q)], ([(start, len_k)] if len_k > start else None)


def _gpu_dtypes():
    try:
        import torch

        return (torch.bfloat16, torch.float16)
    except ImportError:  # pragma: no cover
        return ()


_GPU_DTYPES = _gpu_dtypes()


def _self_attention(name: str, module) -> bool:
    # diffusers names a transformer block's self-attention attn1 (attn2: cross-attention; Wan,
    # for one, runs both with the same processor class). Joint attention over video and text
    # (HunyuanVideo) is known by its processor; HunyuanVideo's text refiner has another one.
    processor = getattr(module, "processor", None)
    if isinstance(processor, LiteAttentionProcessor):
        processor = processor.inner
    return name.split(".")[-1] == "attn1" or type(processor).__name__ in _TEXT_LAST_PROCESSORS


def install(model, select: Callable[[str, object], bool] = _self_attention,
            **lite_attention_kwargs) -> List[LiteAttention]:
    """Gives every selected attention module (default: self-attention, named attn1, and the joint
    video-text attention of HunyuanVideo's blocks) a LiteAttentionProcessor with its own
    LiteAttention(**lite_attention_kwargs); returns them in module order. Installing twice leaves
    the existing ones in place."""
    installed = []
    for name, module in model.named_modules():
        if not (hasattr(module, "processor") and hasattr(module, "set_processor")) or not select(name, module):
            continue
        processor = module.processor
        if not isinstance(processor, LiteAttentionProcessor):
            processor = LiteAttentionProcessor(processor, **lite_attention_kwargs)
            module.set_processor(processor)
        installed.append(processor.lite_attention)
    if not installed:
        raise ValueError("model: found no attention module to give a LiteAttention (select matched nothing)")
    return installed


def uninstall(model) -> None:
    """Puts the wrapped diffusers processors back."""
    for _, module in model.named_modules():
        processor = getattr(module, "processor", None)
        if isinstance(processor, LiteAttentionProcessor):
            module.set_processor(processor.inner)

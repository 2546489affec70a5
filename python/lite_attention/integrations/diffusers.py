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
processor makes through diffusers' ``dispatch_attention_fn`` ((B, L, H, D) tensors, no mask, not
causal, no context parallelism) goes to the layer's LiteAttention. Anything else falls through
to diffusers. One LiteAttention per attention module, one skip state per branch (CFG pass).
float32 inputs on CUDA run in bfloat16 (the GPU kernel's types) and are cast back.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Callable, Dict, Hashable, List, Optional

from ..attention import LiteAttention

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


def _routed(original: Callable) -> Callable:
    def dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                              enable_gqa=False, attention_kwargs=None, **kwargs):
        processor = _ACTIVE.get()
        if (processor is None or attn_mask is not None or is_causal or dropout_p
                or kwargs.get("parallel_config") is not None):
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)
        return processor.attend(query, key, value, scale)

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

    def __call__(self, attn, hidden_states, *args, **kwargs):
        token = _ACTIVE.set(self)
        try:
            return self.inner(attn, hidden_states, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    def attend(self, query, key, value, scale=None):
        cast = query.is_cuda and query.dtype not in _GPU_DTYPES
        if cast:
            import torch

            dtype = query.dtype
            query, key, value = (x.to(torch.bfloat16) for x in (query, key, value))
        out = self.lite_attention(query, key, value, scale=scale, branch=_BRANCH.get())
        return out.to(dtype) if cast else out

    def __getattr__(self, name):
        # diffusers reads processor attributes such as _attention_backend; answer for the inner one.
        if name in ("inner", "lite_attention"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _gpu_dtypes():
    try:
        import torch

        return (torch.bfloat16, torch.float16)
    except ImportError:  # pragma: no cover
        return ()


_GPU_DTYPES = _gpu_dtypes()


def _self_attention(name: str, module) -> bool:
    # diffusers names a transformer block's self-attention attn1 (attn2: cross-attention).
    return name.split(".")[-1] == "attn1"


def install(model, select: Callable[[str, object], bool] = _self_attention,
            **lite_attention_kwargs) -> List[LiteAttention]:
    """Gives every selected attention module (default: self-attention, named attn1) a
    LiteAttentionProcessor with its own LiteAttention(**lite_attention_kwargs); returns them in
    module order. Installing twice leaves the existing ones in place."""
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

"""diffusers integration: LiteAttention inside a diffusers transformer (WanTransformer3DModel,
HunyuanVideoTransformer3DModel, CogVideoXTransformer3DModel).

    import lite_attention as la
    from lite_attention.integrations import diffusers as la_diffusers

    attns = la_diffusers.install(pipe.transformer, threshold=-10.0)   # self-attention layers only
    video = pipe(prompt, negative_prompt=negative).frames[0]   # CFG passes on branches 0 and 1
    la_diffusers.uninstall(pipe.transformer)

    for i, t in enumerate(timesteps):            # or, in your own loop, name them yourself
        la.set_step(pipe.transformer, i)
        with la_diffusers.branch("cond"):
            noise_cond = pipe.transformer(latents, t, prompt_embeds).sample
        with la_diffusers.branch("uncond"):
            noise_uncond = pipe.transformer(latents, t, negative_prompt_embeds).sample

The installed processor wraps the module's own diffusers processor: its projections, norms,
rotary embedding and output projection run unchanged; only its core attention call (through
diffusers' ``dispatch_attention_fn``, or torch's ``scaled_dot_product_attention`` for CogVideoX)
goes to the layer's LiteAttention. A boolean key-padding mask (HunyuanVideo's text padding: every
batch row keeps the same first n keys) runs as attention over those n keys; any other mask, causal
or dropout calls and context parallelism fall through to diffusers. One LiteAttention per
attention module, one skip state per branch (CFG pass). float32 inputs on CUDA run in bfloat16
(the GPU kernel's types) and are cast back.

Joint attention (text and video tokens in one sequence: text last in HunyuanVideo, first in
CogVideoX): the text's query rows run dense and the text's key tiles are never skipped, so
skipping acts on video-to-video attention only (the text is a small part of the work, and the
prompt's hold on every video token does not depend on how far the tokens are apart).
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
import weakref
from typing import Callable, Hashable, List, Optional, Tuple

from ..attention import LiteAttention

# (processor, text tokens appended to its sequence) of the attention module running now.
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("lite_attention_processor", default=None)
_BRANCH: contextvars.ContextVar = contextvars.ContextVar("lite_attention_branch", default=None)


@contextlib.contextmanager
def branch(name: Optional[Hashable]):
    """Calls inside run on this branch's skip states (e.g. 'cond', 'uncond')."""
    token = _BRANCH.set(name)
    try:
        yield
    finally:
        _BRANCH.reset(token)


# Processors of joint attention, by class name: where they put the text tokens
# (encoder_hidden_states) in the sequence, before the video tokens or after them.
_TEXT_PLACEMENT = {
    "HunyuanVideoAttnProcessor2_0": "last",
    "CogVideoXAttnProcessor2_0": "first",
    "FusedCogVideoXAttnProcessor2_0": "first",
}

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


def _route(query, key, value, attn_mask, dropout_p, is_causal, scale, other_arguments: bool):
    """The output of the running processor's LiteAttention for (B, L, H, D) tensors, or None when
    the call is not one it takes (none running, causal, dropout, a mask other than key padding,
    arguments LiteAttention does not have)."""
    active = _ACTIVE.get()
    if active is None or is_causal or dropout_p or other_arguments:
        return None
    kept_keys = key.shape[1]
    if attn_mask is not None:
        kept_keys = _kept_key_prefix(attn_mask, key.shape[0], key.shape[1])
        if kept_keys is None:
            return None
    processor, text = active
    return processor.attend(query, key, value, scale, kept_keys=kept_keys, text=text)


def _routed_dispatch(original: Callable) -> Callable:
    """diffusers' dispatch_attention_fn ((B, L, H, D) tensors), routed."""
    def dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                              enable_gqa=False, attention_kwargs=None, **kwargs):
        out = _route(query, key, value, attn_mask, dropout_p, is_causal, scale,
                     kwargs.get("parallel_config") is not None)
        if out is None:
            out = original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                           scale=scale, enable_gqa=enable_gqa, attention_kwargs=attention_kwargs, **kwargs)
        return out

    dispatch_attention_fn.__wrapped__ = original
    dispatch_attention_fn._lite_attention = True
    return dispatch_attention_fn


class _RoutedFunctional:
    """torch.nn.functional for a diffusers module whose processors call
    F.scaled_dot_product_attention ((B, H, L, D) tensors) directly (CogVideoX's): that one call
    routed, every other name torch's own."""

    _lite_attention = True

    def __init__(self, functional):
        self._functional = functional

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def scaled_dot_product_attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                     scale=None, enable_gqa=False):
        out = None
        if query.dim() == 4:
            out = _route(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask, dropout_p,
                         is_causal, scale, bool(enable_gqa))
        if out is None:
            return self._functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                                 dropout_p=dropout_p, is_causal=is_causal,
                                                                 scale=scale, enable_gqa=enable_gqa)
        return out.transpose(1, 2)


def _patch(module_name: str) -> None:
    """Routes the attention call of the processors defined in that module: diffusers'
    dispatch_attention_fn where they use it, else torch's scaled_dot_product_attention."""
    module = sys.modules.get(module_name)
    fn = getattr(module, "dispatch_attention_fn", None)
    functional = getattr(module, "F", None)
    if fn is not None:
        if not getattr(fn, "_lite_attention", False):
            module.dispatch_attention_fn = _routed_dispatch(fn)
    elif functional is not None and hasattr(functional, "scaled_dot_product_attention"):
        if not getattr(functional, "_lite_attention", False):
            module.F = _RoutedFunctional(functional)
    else:
        raise TypeError(f"processor: {module_name} calls neither diffusers' dispatch_attention_fn nor "
                        "torch's scaled_dot_product_attention as F; this processor cannot be wrapped")


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
        token = _ACTIVE.set((self, self._text(args, kwargs)))
        try:
            return self.inner(attn, hidden_states, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    def _text(self, args, kwargs) -> Optional[Tuple[str, int]]:
        """(where the text sits, its token count) for a processor of joint attention."""
        placement = _TEXT_PLACEMENT.get(type(self.inner).__name__)
        text = kwargs.get("encoder_hidden_states", args[0] if args else None)
        return None if placement is None or text is None else (placement, int(text.shape[1]))

    def attend(self, query, key, value, scale=None, kept_keys: Optional[int] = None,
               text: Optional[Tuple[str, int]] = None):
        """Attention of query over the first kept_keys keys (all by default), (B, L, H, D). With
        text = (placement, n), the first or last n positions of the sequence are text tokens:
        their query rows run dense and their key tiles are never skipped."""
        cast = query.is_cuda and query.dtype not in _GPU_DTYPES
        if cast:
            import torch

            dtype = query.dtype
            query, key, value = (x.to(torch.bfloat16) for x in (query, key, value))
        if kept_keys is not None and kept_keys < key.shape[1]:
            key, value = key[:, :kept_keys], value[:, :kept_keys]
        dense_queries, must_do = _text_ranges(query.shape[1], key.shape[1], text)
        out = self.lite_attention(query, key, value, scale=scale, branch=_BRANCH.get(), must_do_list=must_do,
                                  dense_queries=dense_queries)
        return out.to(dtype) if cast else out

    def __getattr__(self, name):
        # diffusers reads processor attributes such as _attention_backend; answer for the inner one.
        if name in ("inner", "lite_attention", "__call__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _text_ranges(len_q: int, len_k: int, text: Optional[Tuple[str, int]]) -> Tuple[Optional[list], Optional[list]]:
    """(dense query ranges, must-do key ranges) for a sequence with text = (placement, n) tokens
    of text first or last; the keys end at len_k (text padding at the end cut off)."""
    if text is None or text[1] <= 0:
        return None, None
    placement, n = text
    if placement == "first":
        return [(0, min(n, len_q))], [(0, min(n, len_k))]
    start = max(len_q - n, 0)
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
    return name.split(".")[-1] == "attn1" or type(processor).__name__ == "HunyuanVideoAttnProcessor2_0"


class _Trajectory:
    """Forward hooks on a transformer that follow the sampler through its timestep argument, so
    that a pipeline run as it is (``pipe(prompt)``) keeps CFG branches apart and starts each
    video afresh:
    - a pass whose timestep equals the previous pass's is the next pass of the same denoising
      step; a step's passes run on branches 0, 1, ... in order (diffusers' pipelines run the
      conditional pass first, then the unconditional one);
    - a timestep above the previous one starts a new trajectory (a new video): every skip state
      and step counter of the model's LiteAttention instances starts over.
    Reading the timestep is one small device-to-host copy per pass. A pass inside an explicit
    branch() is left alone."""

    def __init__(self, model):
        self.model = model
        self.signature = inspect.signature(model.forward)
        self.last: Optional[list] = None  # the previous pass's timestep values
        self.index = 0  # the branch of the previous pass
        self.tokens: list = []
        self.handles = (model.register_forward_pre_hook(self.before, with_kwargs=True),
                        model.register_forward_hook(self.after, always_call=True))

    def before(self, module, args, kwargs):
        if _BRANCH.get() is not None:
            self.tokens.append(None)
            return
        timestep = self.signature.bind_partial(*args, **kwargs).arguments.get("timestep")
        values = timestep.detach().flatten().tolist() if hasattr(timestep, "detach") else [float(timestep)]
        if values == self.last:
            self.index += 1
        else:
            if self.last is not None and values[0] > self.last[0]:
                from ..attention import reset_skip_states

                reset_skip_states(self.model)
            self.index = 0
        self.last = values
        self.tokens.append(_BRANCH.set(self.index))

    def after(self, module, args, output):
        token = self.tokens.pop()
        if token is not None:
            _BRANCH.reset(token)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def install(model, select: Callable[[str, object], bool] = _self_attention, auto_branches: bool = True,
            **lite_attention_kwargs) -> List[LiteAttention]:
    """Gives every selected attention module (default: self-attention, named attn1, and the joint
    video-text attention of HunyuanVideo's blocks) a LiteAttentionProcessor with its own
    LiteAttention(**lite_attention_kwargs); returns them in module order. Installing twice leaves
    the existing ones in place.

    auto_branches: follow the sampler through the model's timestep argument (see _Trajectory):
    the passes of a denoising step run on branches 0, 1, ... and a new video resets the states,
    so ``pipe(prompt)`` needs no further code. Explicit ``branch()`` contexts and ``set_step`` take
    over where used."""
    if auto_branches and "timestep" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"auto_branches: {type(model).__name__}.forward takes no timestep to follow; pass "
                         "auto_branches=False and name the branches with branch()")
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
    if auto_branches and getattr(model, "_lite_attention_trajectory", None) is None:
        model._lite_attention_trajectory = _Trajectory(model)
    return installed


def uninstall(model) -> None:
    """Puts the wrapped diffusers processors back and removes the trajectory hooks."""
    for _, module in model.named_modules():
        processor = getattr(module, "processor", None)
        if isinstance(processor, LiteAttentionProcessor):
            module.set_processor(processor.inner)
    trajectory = getattr(model, "_lite_attention_trajectory", None)
    if trajectory is not None:
        trajectory.remove()
        model._lite_attention_trajectory = None

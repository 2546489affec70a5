"""diffusers integration: LiteAttention inside a diffusers transformer (WanTransformer3DModel,
HunyuanVideoTransformer3DModel, HunyuanVideo15Transformer3DModel, CogVideoXTransformer3DModel).

    import lite_attention as la
    from lite_attention.integrations import diffusers as la_diffusers

    attns = la_diffusers.install(pipe.transformer, threshold=-10.0)   # self-attention layers only
    video = pipe(prompt, negative_prompt=negative).frames[0]   # CFG passes on branches 0 and 1
    la_diffusers.uninstall(pipe.transformer)

    for i, t in enumerate(timesteps):            # or, in your own loop, name them yourself
        la.set_step(pipe.transformer, i)
        with la_diffusers.branch("cond"):
            noise_cond = pipe.transformer(latents, t.expand(latents.shape[0]), prompt_embeds).sample
        with la_diffusers.branch("uncond"):
            noise_uncond = pipe.transformer(latents, t.expand(latents.shape[0]), negative_prompt_embeds).sample

The installed processor wraps the module's own diffusers processor: its projections, norms,
rotary embedding and output projection run unchanged; only its core attention call (through
diffusers' ``dispatch_attention_fn``, or torch's ``scaled_dot_product_attention`` for CogVideoX)
goes to the layer's LiteAttention. A boolean padding mask that keeps the same first n keys for
every batch row runs as attention over those n keys: as a key-padding mask (HunyuanVideo's text
padding) for every query row, and as HunyuanVideo 1.5's per-row mask (the padding masked as
queries too) for rows 0 .. n - 1, the padding rows coming out as zeros, as torch gives them. Any
other mask, causal or dropout calls fall through to diffusers. Under diffusers' context parallelism (Ulysses,
ring or both) the self-attention runs on LiteAttention (each rank's states hold its heads and query
rows); joint attention under context parallelism falls through. One LiteAttention per
installed attention module, one skip state per branch (CFG pass). float32 inputs on CUDA run in bfloat16
(the GPU kernel's types) and are cast back.

Joint attention (text and video tokens in one sequence: text last in HunyuanVideo, first in
CogVideoX): the text's query rows run dense and the text's key tiles are never skipped, so
skipping acts on video-to-video attention only (the text is a small part of the work, and the
prompt's hold on every video token does not depend on how far the tokens are apart).
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Callable, Hashable, List, Optional

from ...attention import LiteAttention
from ._processor import _TEXT_PLACEMENT, LiteAttentionProcessor
from ._routing import CURRENT, claim, release
from ._trajectory import _Trajectory

__all__ = ["LiteAttentionProcessor", "branch", "install", "record", "uninstall"]


@contextlib.contextmanager
def branch(name: Optional[Hashable]):
    """Calls inside run on this branch's skip states (e.g. 'cond', 'uncond'). Process-wide: one
    pipeline at a time per process (a plain setting that torch.compile can read)."""
    owner = claim()
    previous = CURRENT.branch
    CURRENT.branch = name
    try:
        yield
    finally:
        CURRENT.branch = previous
        release(owner)


@contextlib.contextmanager
def record(model, layer: int = 0, branch: Optional[Hashable] = 0, heads: Optional[slice] = None,
           device="cpu"):
    """Records the inputs of one installed layer: inside the context, every call of the layer's
    LiteAttention on `branch` appends its (q, k, v), (B, L, H, D) as the LiteAttention received
    them, copied to `device`; one entry per denoising step when the pipeline runs one pass per
    branch and step. The list is a trajectory for lite_attention.calibrate().

    layer: the index among the model's installed LiteAttention instances (install's order).
    branch: 0 for the first pass of each step under auto_branches (diffusers' conditional pass),
        or the name given to branch(); a pipeline that batches both passes (CogVideoX) has them
        as batch rows of one branch.
    heads: a slice of the query heads to keep, to bound the memory; with grouped key/value heads
        its bounds must be multiples of the group size, and the key/value heads of those groups
        are kept.
    Raises ValueError at the end when the layer made no call on that branch."""
    _check_model(model)
    processors = [m.processor for _, m in model.named_modules()
                  if isinstance(getattr(m, "processor", None), LiteAttentionProcessor)]
    if not processors:
        raise ValueError("model: no LiteAttention installed (call install first)")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(processors):
        raise ValueError(f"layer: expected an index in [0, {len(processors) - 1}], got {layer!r}")
    if heads is not None and (not isinstance(heads, slice) or heads.step not in (None, 1)):
        raise ValueError(f"heads: expected a slice of consecutive heads, got {heads!r}")
    trajectory: list = []

    def keep(q, k, v, running_branch):
        if running_branch != branch:
            return
        if heads is not None:
            start, stop, _ = heads.indices(q.shape[2])
            group = q.shape[2] // k.shape[2]
            if start % group or stop % group:
                raise ValueError(f"heads: expected bounds that are multiples of the {group} query heads per key/value "
                                 f"head, got {heads!r}")
            q, k, v = q[:, :, start:stop], k[:, :, start // group:stop // group], v[:, :, start // group:stop // group]
        trajectory.append(tuple(x.to(device, copy=True) for x in (q, k, v)))

    recorders = processors[layer]._recorders
    recorders.append(keep)
    try:
        yield trajectory
    finally:
        recorders.remove(keep)
    if not trajectory:
        raise ValueError(f"branch: layer {layer} made no call on branch {branch!r} (with auto_branches=False and no "
                         "branch(), calls run on branch None)")


def _self_attention(name: str, module) -> bool:
    # diffusers names a transformer block's self-attention attn1 (attn2: cross-attention; Wan,
    # for one, runs both with the same processor class). Joint attention over video and text
    # (HunyuanVideo 1.0 and 1.5) is known by its processor; their text refiners have another one.
    processor = getattr(module, "processor", None)
    if isinstance(processor, LiteAttentionProcessor):
        processor = processor.inner
    return name.split(".")[-1] == "attn1" or type(processor).__name__ in _TEXT_PLACEMENT


def install(model, select: Callable[[str, object], bool] = _self_attention, auto_branches: bool = True,
            **lite_attention_kwargs) -> List[LiteAttention]:
    """Gives every selected attention module (default: self-attention, named attn1, and the joint
    video-text attention of HunyuanVideo's and HunyuanVideo 1.5's blocks) a LiteAttentionProcessor
    with its own LiteAttention(**lite_attention_kwargs); returns them in module order. Installing
    again without arguments returns the existing ones; with arguments it is an error (uninstall
    first), so that new arguments are never silently dropped.

    auto_branches: follow the sampler through the model's timestep argument (see _Trajectory):
    the passes of a denoising step run on branches 0, 1, ..., every layer's step follows the
    sampler's steps (also layers that a block cache leaves out), and a new video resets the states,
    so ``pipe(prompt)`` needs no further code. Explicit ``branch()`` contexts and ``set_step`` take
    over where used (a new video still resets the states)."""
    _check_model(model)
    if "lite_attention" in lite_attention_kwargs:
        raise TypeError("lite_attention: install() gives every module its own LiteAttention (one shared instance "
                        "would mix the layers' states and steps); pass LiteAttention's arguments instead")
    if auto_branches and "timestep" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"auto_branches: {type(model).__name__}.forward takes no timestep to follow; pass "
                         "auto_branches=False and name the branches with branch()")
    selected = [module for name, module in model.named_modules()
                if hasattr(module, "processor") and hasattr(module, "set_processor") and select(name, module)]
    if not selected:
        raise ValueError("model: found no attention module to give a LiteAttention (select matched nothing)")
    if lite_attention_kwargs and any(isinstance(m.processor, LiteAttentionProcessor) for m in selected):
        raise ValueError(f"{', '.join(sorted(lite_attention_kwargs))}: these modules already have a LiteAttention "
                         "(installed before); uninstall(model) first to install with other arguments")
    installed = []
    for module in selected:
        processor = module.processor
        if not isinstance(processor, LiteAttentionProcessor):
            processor = LiteAttentionProcessor(processor, **lite_attention_kwargs)
            module.set_processor(processor)
        installed.append(processor.lite_attention)
    trajectory = getattr(model, "_lite_attention_trajectory", None)
    if trajectory is not None:
        trajectory.forget_instances()  # the model's LiteAttention set may have grown
    elif auto_branches:
        model._lite_attention_trajectory = _Trajectory(model)
    return installed


def _check_model(model) -> None:
    """A diffusers transformer as it is: not a pipeline, not a torch.compile wrapper."""
    import torch

    if hasattr(model, "_orig_mod"):
        raise TypeError("model: got a torch.compile'd module; install LiteAttention on the transformer first, then "
                        "compile it (installing swaps processors that the compiled code was traced with)")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected the pipeline's transformer (a torch.nn.Module such as pipe.transformer), "
                        f"got {type(model).__name__}")


def uninstall(model) -> None:
    """Puts the wrapped diffusers processors back and removes the trajectory hooks."""
    _check_model(model)
    for _, module in model.named_modules():
        processor = getattr(module, "processor", None)
        if isinstance(processor, LiteAttentionProcessor):
            module.set_processor(processor.inner)
    trajectory = getattr(model, "_lite_attention_trajectory", None)
    if trajectory is not None:
        trajectory.remove()
        model._lite_attention_trajectory = None

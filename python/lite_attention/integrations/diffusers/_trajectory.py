"""Following a sampler through the transformer's timestep argument: branches per pass, a fresh
start per video."""
from __future__ import annotations

import inspect
from typing import Optional

import torch

from ...attention import find_lite_attention, reset_skip_states
from ._routing import CURRENT, UNCLAIMED, claim, release


class _Trajectory:
    """Forward hooks on a transformer that follow the sampler through its timestep argument, so
    that a pipeline run as it is (``pipe(prompt)``) keeps CFG branches apart and starts each
    video afresh:
    - a pass whose timestep equals the previous pass's is the next pass of the same denoising
      step; a step's passes run on branches 0, 1, ... in order (diffusers' pipelines run the
      conditional pass first, then the unconditional one);
    - a pass at a new, lower timestep starts the next denoising step: every LiteAttention of the
      model is set to that step, also those of layers a block cache leaves out (their own step
      counting would fall behind);
    - a timestep above the previous one starts a new trajectory (a new video): every skip state
      and step counter of the model's LiteAttention instances starts over.
    A timestep tensor counts by its largest value (per-token timesteps, as Wan2.2's image-to-video
    passes, hold 0 for the conditioning frame): one scalar copied to the host per pass. A pass
    inside an explicit branch() keeps that branch and the caller's set_step, but a new video
    still resets the states. Samplers that repeat a timestep across steps or videos (one-step
    samplers) cannot be followed this way: after MAX_PASSES passes at one timestep the hook
    raises, naming auto_branches."""

    MAX_PASSES = 8

    def __init__(self, model):
        self.model = model
        self.signature = inspect.signature(model.forward)
        self.last: Optional[float] = None  # the previous pass's timestep
        self.index = 0  # the branch of the previous pass
        self.step = 0  # the denoising step of the previous pass (auto mode)
        self.instances: Optional[list] = None  # the model's LiteAttention instances (found once)
        self.outer: list = []  # (branch, owner) each running pass found set (nested passes: a stack)
        self.handles = (model.register_forward_pre_hook(self.before, with_kwargs=True),
                        model.register_forward_hook(self.after, always_call=True))

    def forget_instances(self) -> None:
        self.instances = None

    def before(self, module, args, kwargs):
        # What after() puts back, also when this raises: the branch, and the owner of CURRENT
        # (eager passes hold it for their whole length, so no other thread's pass runs between
        # this pass's layers on this pass's branch).
        self.outer.append((CURRENT.branch, UNCLAIMED))
        self.outer[-1] = (CURRENT.branch, claim())
        timestep = self.signature.bind_partial(*args, **kwargs).arguments.get("timestep")
        if (CURRENT.branch is not None and getattr(timestep, "is_cuda", False)
                and torch.cuda.is_current_stream_capturing()):
            return  # a pass captured into a CUDA graph inside branch(): reading the timestep would synchronize
        if timestep is None:
            if CURRENT.branch is None:
                raise ValueError("auto_branches: this pass gave the model no timestep to follow; pass "
                                 "install(..., auto_branches=False) and name the branches with branch()")
            return  # an explicit branch without a timestep: nothing to follow
        value = float(timestep.detach().max()) if hasattr(timestep, "detach") else float(timestep)
        new_video = self.last is not None and value > self.last
        if new_video:
            reset_skip_states(self.model)
            self.step = 0
        if CURRENT.branch is None:
            if value == self.last:
                self.index += 1
                if self.index >= self.MAX_PASSES:
                    raise RuntimeError(f"auto_branches: {self.index + 1} passes in a row at timestep {value}; a "
                                       "sampler that repeats timesteps across steps or videos needs "
                                       "install(..., auto_branches=False) and branch()")
            else:
                if self.last is not None and not new_video:
                    self.step += 1
                    self._set_step(self.step)
                self.index = 0
            CURRENT.branch = self.index
        self.last = value

    def _set_step(self, step: int) -> None:
        if self.instances is None:
            self.instances = find_lite_attention(self.model)
        for attn in self.instances:
            attn.step = step

    def after(self, module, args, output):
        CURRENT.branch, owner = self.outer.pop()
        release(owner)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

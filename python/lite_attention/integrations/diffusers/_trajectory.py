"""Following a sampler through the transformer's timestep argument: branches per pass, a fresh
start per video."""
from __future__ import annotations

import inspect
from typing import Optional

from ...attention import reset_skip_states
from ._routing import _BRANCH

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

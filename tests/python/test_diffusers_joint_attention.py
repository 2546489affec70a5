"""The diffusers integration on joint video-text attention, on tiny models built from configs
with random weights: HunyuanVideoTransformer3DModel (text tokens after the video tokens, the
text's padding masked out as keys; routed through diffusers' dispatch_attention_fn),
HunyuanVideo15Transformer3DModel (the same, the padding masked out as queries too) and
CogVideoXTransformer3DModel (text tokens first, rotary embedding on the video tokens; routed
through torch's scaled_dot_product_attention). This tests the integration (routing, the padding
mask, the text ranges, branches), not quality."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from unittest import mock  # noqa: E402

from diffusers.models.attention_dispatch import dispatch_attention_fn  # noqa: E402

import lite_attention as la  # noqa: E402
from lite_attention.integrations import diffusers as la_diffusers  # noqa: E402
from lite_attention.integrations.diffusers import _routing  # noqa: E402
from lite_attention.integrations.diffusers._routing import _kept_prefixes  # noqa: E402

TEXT_TOKENS = 8  # the (padded) text length


class HunyuanVideo:
    """Video tokens, then TEXT_TOKENS text tokens of which the first real_text[b] are real."""

    padded_text = True

    @staticmethod
    def model(head_dim=32):
        from diffusers import HunyuanVideoTransformer3DModel

        torch.manual_seed(0)
        rope_axes = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)  # (frames, rows, columns)
        return HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                              attention_head_dim=head_dim, num_layers=1, num_single_layers=1,
                                              num_refiner_layers=1, text_embed_dim=32, pooled_projection_dim=16,
                                              rope_axes_dim=rope_axes).eval()

    @staticmethod
    def inputs(real_text=(5,), seed=0, frames=3, size=16, head_dim=None):
        g = torch.Generator().manual_seed(seed)
        batch = len(real_text)
        latents = torch.randn(batch, 4, frames, size, size, generator=g)
        text = torch.randn(batch, TEXT_TOKENS, 32, generator=g)
        text_mask = torch.stack([torch.arange(TEXT_TOKENS) < n for n in real_text]).long()
        pooled = torch.randn(batch, 16, generator=g)
        return latents, text, text_mask, pooled

    @staticmethod
    def forward(model, x, t=500):
        latents, text, text_mask, pooled = x
        batch, device = latents.shape[0], latents.device
        with torch.no_grad():
            return model(latents, torch.full((batch,), t, device=device), text, text_mask, pooled,
                         guidance=torch.full((batch,), 3000.0, device=device)).sample

    @staticmethod
    def text_positions(video_tokens, real_text):
        """(query rows, key positions) of the text; the keys end at the real text."""
        return range(video_tokens, video_tokens + TEXT_TOKENS), range(video_tokens, video_tokens + real_text)


class HunyuanVideo15:
    """Video tokens, then the conditioning tokens, real ones first: the image tokens (none real:
    text-to-video), BYT5_REAL of BYT5_TOKENS glyph-text tokens, real_text[b] of TEXT_TOKENS text
    tokens. Its processor masks the padding as keys and as queries (one Lq x Lk mask per call)."""

    IMAGE_TOKENS, BYT5_TOKENS, BYT5_REAL = 3, 4, 2
    padded_text = True

    @staticmethod
    def model(head_dim=32):
        from diffusers import HunyuanVideo15Transformer3DModel

        torch.manual_seed(0)
        rope_axes = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)
        return HunyuanVideo15Transformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                attention_head_dim=head_dim, num_layers=2, num_refiner_layers=1,
                                                patch_size=2, text_embed_dim=32, text_embed_2_dim=16,
                                                image_embed_dim=16, rope_axes_dim=rope_axes).eval()

    @classmethod
    def inputs(cls, real_text=(5,), seed=0, frames=3, size=16, head_dim=None):
        g = torch.Generator().manual_seed(seed)
        batch = len(real_text)
        latents = torch.randn(batch, 4, frames, size, size, generator=g)
        text = torch.randn(batch, TEXT_TOKENS, 32, generator=g)
        text_mask = torch.stack([torch.arange(TEXT_TOKENS) < n for n in real_text]).long()
        glyphs = torch.randn(batch, cls.BYT5_TOKENS, 16, generator=g)
        glyph_mask = (torch.arange(cls.BYT5_TOKENS) < cls.BYT5_REAL).long().expand(batch, -1)
        image = torch.zeros(batch, cls.IMAGE_TOKENS, 16)
        return latents, text, text_mask, glyphs, glyph_mask, image

    @staticmethod
    def forward(model, x, t=500):
        latents, text, text_mask, glyphs, glyph_mask, image = x
        with torch.no_grad():
            t = torch.full((latents.shape[0],), float(t), device=latents.device, dtype=latents.dtype)
            return model(latents, t, text, text_mask,
                         encoder_hidden_states_2=glyphs, encoder_attention_mask_2=glyph_mask,
                         image_embeds=image).sample

    @classmethod
    def text_positions(cls, video_tokens, real_text):
        """(query rows, key positions) of the conditioning tokens; the keys end at the real ones."""
        tokens = cls.IMAGE_TOKENS + cls.BYT5_TOKENS + TEXT_TOKENS
        return range(video_tokens, video_tokens + tokens), range(video_tokens, video_tokens + cls.BYT5_REAL + real_text)


class CogVideoX:
    """TEXT_TOKENS text tokens, then the video tokens (frames, channels first), with a rotary
    embedding of the video tokens passed in as the pipeline does."""

    padded_text = False

    @staticmethod
    def model(head_dim=32):
        from diffusers import CogVideoXTransformer3DModel

        torch.manual_seed(0)
        return CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=head_dim, in_channels=4,
                                           out_channels=4, num_layers=2, text_embed_dim=32, time_embed_dim=32,
                                           sample_width=16, sample_height=16, sample_frames=9,
                                           use_rotary_positional_embeddings=True).eval()

    @staticmethod
    def inputs(real_text=(TEXT_TOKENS,), seed=0, frames=3, size=16, head_dim=32):
        g = torch.Generator().manual_seed(seed)
        latents = torch.randn(len(real_text), frames, 4, size, size, generator=g)
        text = torch.randn(len(real_text), TEXT_TOKENS, 32, generator=g)
        video_tokens = frames * (size // 2) ** 2
        rotary = (torch.randn(video_tokens, head_dim, generator=g), torch.randn(video_tokens, head_dim, generator=g))
        return latents, text, rotary

    @staticmethod
    def forward(model, x, t=500):
        latents, text, rotary = x
        with torch.no_grad():
            return model(latents, text, torch.full((latents.shape[0],), t, device=latents.device),
                         image_rotary_emb=rotary).sample

    @staticmethod
    def text_positions(video_tokens, real_text):
        return range(0, TEXT_TOKENS), range(0, TEXT_TOKENS)


class CogVideoXFused(CogVideoX):
    """CogVideoX with fused QKV projections (another processor class, the same attention call)."""

    @staticmethod
    def model(head_dim=32):
        model = CogVideoX.model(head_dim)
        model.fuse_qkv_projections()
        return model


MODELS = [pytest.param(HunyuanVideo, id="HunyuanVideo"), pytest.param(HunyuanVideo15, id="HunyuanVideo1.5"),
          pytest.param(CogVideoX, id="CogVideoX"),
          pytest.param(CogVideoXFused, id="CogVideoX-fused")]


def routed_twice(kind, model, x, attns):
    """Runs the model twice; whether both passes' attention ran on the LiteAttention instances
    (installed with auto_branches=False, their step counters advance on the second call) or none
    did."""
    out = kind.forward(model, x)
    kind.forward(model, x)
    return out, all(a.step == 1 for a in attns), all(a.step == 0 for a in attns)


def assert_text_kept(state, rows, keys):
    """The query tiles holding text rows computed every key tile, and every query tile computed
    the key tiles holding text keys."""
    bm, bn = state.key.tile
    kept = state.tile_mask()  # (B, H, query tiles, key tiles)
    assert kept[:, :, rows.start // bm:-(-rows.stop // bm), :].all(), "a text query tile skipped a key tile"
    assert kept[..., keys.start // bn:-(-keys.stop // bn)].all(), "a query tile skipped text keys"


@pytest.mark.parametrize("kind", MODELS)
def test_dense_lite_attention_matches_diffusers(kind):
    model = kind.model()
    x = kind.inputs()
    reference = kind.forward(model, x)
    attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
    # HunyuanVideo: the dual- and the single-stream block's joint attention, not the text refiner.
    assert len(attns) == 2
    out, routed, _ = routed_twice(kind, model, x, attns)
    assert routed  # HunyuanVideo's padding mask did not send the calls back to diffusers
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)
    la_diffusers.uninstall(model)


@pytest.mark.parametrize("kind", [pytest.param(HunyuanVideo, id="HunyuanVideo"), pytest.param(CogVideoX, id="CogVideoX")])
def test_the_instances_dense_queries_stay_dense_beside_the_text(kind):
    """install(dense_queries=...) on joint attention: those video rows run dense as well as the
    text's (the text's range used to replace them)."""
    rows = (64, 96) if kind is HunyuanVideo else (72, 104)  # video rows: text last / first
    model = kind.model()
    attns = la_diffusers.install(model, threshold=0.0, cpu_tile=(16, 16), dense_queries=[rows])
    x = kind.inputs()
    for t in (900, 700, 500, 300):
        kind.forward(model, x, t=t)
    kept = attns[0].state(0).tile_mask()
    assert kept[:, :, rows[0] // 16:-(-rows[1] // 16)].all(), "a dense query tile skipped a key tile"
    assert not kept.all(), "threshold 0 must skip elsewhere for this test to tell"


def test_a_batch_with_different_text_lengths_falls_through_to_diffusers():
    model = HunyuanVideo.model()
    x = HunyuanVideo.inputs(real_text=(5, 3))
    reference = HunyuanVideo.forward(model, x)
    attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
    out, _, untouched = routed_twice(HunyuanVideo, model, x, attns)
    assert untouched
    torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_kept_prefixes_reads_only_padding_masks():
    keys = torch.arange(10)
    prefix = (keys < 7).view(1, 1, 1, 10)
    assert _kept_prefixes(prefix, 1, 10, 10) == (10, 7)  # key padding: every query row attends
    assert _kept_prefixes(prefix.view(1, 10), 3, 12, 10) == (12, 7)  # one row for the whole batch
    assert _kept_prefixes(torch.stack([keys < 7, keys < 7]).view(2, 1, 1, 10), 2, 10, 10) == (10, 7)
    assert _kept_prefixes(torch.stack([keys < 7, keys < 5]).view(2, 1, 1, 10), 2, 10, 10) is None  # lengths differ
    assert _kept_prefixes(((keys < 7) & (keys != 3)).view(1, 1, 1, 10), 1, 10, 10) is None  # a hole
    assert _kept_prefixes(torch.zeros(1, 1, 1, 10, dtype=torch.bool), 1, 10, 10) is None  # nothing kept
    assert _kept_prefixes(prefix.float(), 1, 10, 10) is None  # an additive mask
    assert _kept_prefixes(prefix, 1, 10, 12) is None  # another key count
    # Per query row: the padding masked as keys and as queries (HunyuanVideo 1.5), or as keys only.
    both = (keys[:, None] < 7) & (keys[None, :] < 7)
    assert _kept_prefixes(both.view(1, 1, 10, 10), 1, 10, 10) == (7, 7)
    assert _kept_prefixes(both.expand(2, 1, 10, 10).contiguous(), 2, 10, 10) == (7, 7)
    assert _kept_prefixes(prefix.expand(1, 1, 10, 10).contiguous(), 1, 10, 10) == (10, 7)
    assert _kept_prefixes(torch.tril(torch.ones(10, 10, dtype=torch.bool)).view(1, 1, 10, 10), 1, 10, 10) is None
    holey = both.clone()
    holey[2, 3] = False  # one kept row misses one kept key
    assert _kept_prefixes(holey.view(1, 1, 10, 10), 1, 10, 10) is None
    assert _kept_prefixes(((keys[:, None] < 7) & (keys[None, :] < 5)).view(1, 1, 10, 10), 1, 10, 10) == (7, 5)
    assert _kept_prefixes(((keys[:, None] >= 3) & (keys[None, :] < 7)).view(1, 1, 10, 10), 1, 10, 10) is None
    assert _kept_prefixes(both.view(1, 2, 5, 10), 1, 5, 10) is None  # per head: not a padding mask
    # The last mask's answer is kept per object and version: read once, and again after an
    # in-place change.
    assert _kept_prefixes(prefix, 1, 10, 10) == (10, 7)
    with mock.patch.object(torch, "stack", side_effect=AssertionError("the mask was read again")):
        assert _kept_prefixes(prefix, 1, 10, 10) == (10, 7)
    prefix[..., 6] = False
    assert _kept_prefixes(prefix, 1, 10, 10) == (10, 6)
    with torch.inference_mode():  # inference tensors have no version counter
        inference = (keys < 4).view(1, 1, 1, 10)
        assert _kept_prefixes(inference, 1, 10, 10) == (10, 4)
        assert _kept_prefixes(inference, 1, 10, 10) == (10, 4)


def test_a_key_padding_mask_read_once_serves_other_query_lengths():
    """The answer kept for a mask object holds the keys it keeps; the query rows come from each
    call (a key-padding mask reused by calls with other query lengths)."""
    mask = (torch.arange(10) < 6).view(1, 1, 1, 10)
    assert _kept_prefixes(mask, 1, 16, 10) == (16, 6)
    assert _kept_prefixes(mask, 1, 48, 10) == (48, 6)


def test_a_mask_built_from_a_source_is_read_once_per_source():
    """With source (the per-token mask a processor builds its call's mask from), new mask objects
    built from the same unchanged source reuse the first answer; a changed source or another
    mask shape is read again."""
    source = torch.arange(10) < 7

    def built():  # a new object each call, as HunyuanVideo 1.5's processor builds it
        return (source[:, None] & source[None, :]).view(1, 1, 10, 10)

    with mock.patch.object(_routing, "_read_kept", wraps=_routing._read_kept) as read:
        assert _kept_prefixes(built(), 1, 10, 10, source) == (7, 7)
        assert _kept_prefixes(built(), 1, 10, 10, source) == (7, 7)
        assert read.call_count == 1
        source[6] = False  # in place: a new version
        assert _kept_prefixes(built(), 1, 10, 10, source) == (6, 6)
        assert read.call_count == 2
        wider = torch.nn.functional.pad(built(), (0, 2, 0, 2))  # another shape, the same source
        assert _kept_prefixes(wider, 1, 12, 12, source) == (6, 6)
        assert read.call_count == 3


def test_hunyuan_video_15_reads_its_mask_once_per_forward_pass():
    """Its processor builds a new Lq x Lk mask in every layer from the per-token mask the
    transformer passes to all of them: one host read per forward pass, not per layer, and each
    pass's own text length still counts."""
    model = HunyuanVideo15.model()
    attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
    assert len(attns) == 2
    la_diffusers.uninstall(model)
    for real_text in ((5,), (3,)):
        x = HunyuanVideo15.inputs(real_text=real_text)
        reference = HunyuanVideo15.forward(model, x)
        la_diffusers.install(model, enable_skipping=False, auto_branches=False)
        with mock.patch.object(_routing, "_read_kept", wraps=_routing._read_kept) as read:
            out = HunyuanVideo15.forward(model, x)
        la_diffusers.uninstall(model)
        assert read.call_count == 1
        torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


def test_padding_rows_come_out_as_torch_gives_them():
    """attend(kept=(n_q, n_k)) over every row against torch's scaled_dot_product_attention with
    the per-row padding mask: rows past n_q attend to no key and are zeros."""
    processor = la_diffusers.LiteAttentionProcessor(_GlobalDispatch(), enable_skipping=False)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 40, 2, 16, generator=g) for _ in range(3))
    kept = torch.arange(40) < 29
    mask = (kept[:, None] & kept[None, :]).view(1, 1, 40, 40)
    want = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), attn_mask=mask)
    got = processor.attend(q, k, v, kept=(29, 29))
    torch.testing.assert_close(got, want.transpose(1, 2), atol=1e-5, rtol=1e-5)
    assert not got[:, 29:].any()


class _GlobalDispatch:
    """A processor whose __call__ makes one attention call through diffusers' dispatch_attention_fn
    (a global of its module), twice when asked."""

    def __call__(self, attn, hidden_states, twice=False):
        x = hidden_states.unflatten(2, (2, -1))
        out = dispatch_attention_fn(x, x, x)
        if twice:
            out = dispatch_attention_fn(x, out, out)
        return out.flatten(2)


class _LocalDispatch:
    """Imports dispatch_attention_fn inside its __call__: no global name to route."""

    def __call__(self, attn, hidden_states):
        from diffusers.models.attention_dispatch import dispatch_attention_fn as local

        return local(hidden_states, hidden_states, hidden_states)


class _UnknownJoint:
    """Joint attention of a processor not in the integration's table: text appended to the queries
    and keys."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None):
        x = torch.cat([hidden_states, encoder_hidden_states], dim=1).unflatten(2, (2, -1))
        return dispatch_attention_fn(x, x, x).flatten(2)[:, :hidden_states.shape[1]]


class _Cross:
    """Cross-attention: the video's queries over the text's keys."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None):
        q, kv = hidden_states.unflatten(2, (2, -1)), encoder_hidden_states.unflatten(2, (2, -1))
        return dispatch_attention_fn(q, kv, kv).flatten(2)


class _GroupedHeads:
    """Self-attention with 4 query heads over 2 key/value heads."""

    def __call__(self, attn, hidden_states):
        q = hidden_states.unflatten(2, (4, -1))
        kv = q[:, :, ::2] * 0.5
        return dispatch_attention_fn(q, kv, kv, enable_gqa=True).flatten(2)


class _Holder(torch.nn.Module):
    """An attention module as install and record see one: a processor and set_processor."""

    def __init__(self, processor):
        super().__init__()
        self.processor = processor

    def set_processor(self, processor):
        self.processor = processor


class _RotaryFirst:
    """Takes a rotary embedding (a tuple) where other processors take encoder_hidden_states."""

    def __call__(self, attn, hidden_states, rotary_emb=None):
        x = hidden_states.unflatten(2, (2, -1))
        return dispatch_attention_fn(x * rotary_emb[0], x, x).flatten(2)


class _NoAttention:
    def __call__(self, attn, hidden_states):
        return torch.nn.functional.gelu(hidden_states)


def test_unknown_joint_attention_is_refused_and_cross_attention_runs():
    """With encoder_hidden_states, a processor outside the table of joint-attention layouts runs
    when the text stays out of the queries (cross-attention) and is refused when it joins them
    (its text tiles would be skippable)."""
    video, text = torch.randn(1, 24, 32), torch.randn(1, 8, 32)
    joint = la_diffusers.LiteAttentionProcessor(_UnknownJoint(), enable_skipping=False)
    with pytest.raises(RuntimeError, match="_UnknownJoint puts its 8 text tokens into the attention's sequence"):
        joint(None, video, encoder_hidden_states=text)
    cross = la_diffusers.LiteAttentionProcessor(_Cross(), enable_skipping=False)
    torch.testing.assert_close(cross(None, video, encoder_hidden_states=text),
                               _Cross()(None, video, encoder_hidden_states=text), atol=1e-5, rtol=1e-5)
    cross(None, video, encoder_hidden_states=text)
    assert cross.lite_attention.step == 1  # both calls ran on the LiteAttention


def test_record_keeps_whole_head_groups_and_says_when_it_recorded_nothing():
    holder = _Holder(la_diffusers.LiteAttentionProcessor(_GroupedHeads(), enable_skipping=False))
    x = torch.randn(1, 24, 64)
    q = x.unflatten(2, (4, -1))
    with la_diffusers.branch("cond"):
        with la_diffusers.record(holder, branch="cond", heads=slice(2, 4)) as trajectory:
            holder.processor(None, x)
        assert len(trajectory) == 1
        got_q, got_k, got_v = trajectory[0]
        assert torch.equal(got_q, q[:, :, 2:4]) and torch.equal(got_k, q[:, :, 2:3] * 0.5)  # key/value head 1
        with pytest.raises(ValueError, match="heads: expected bounds that are multiples of the 2 query heads"):
            with la_diffusers.record(holder, branch="cond", heads=slice(1, 3)):
                holder.processor(None, x)
        with pytest.raises(ValueError, match="branch: layer 0 made no call on branch 'uncond'"):
            with la_diffusers.record(holder, branch="uncond"):
                holder.processor(None, x)
    with pytest.raises(ValueError, match="heads: expected a slice of consecutive heads"):
        with la_diffusers.record(holder, heads=[0, 1]):
            pass


def test_a_processor_is_wrapped_only_when_its_call_makes_the_attention_call():
    with pytest.raises(TypeError, match="_NoAttention.__call__ calls neither"):
        la_diffusers.LiteAttentionProcessor(_NoAttention())
    with pytest.raises(TypeError, match="_LocalDispatch.__call__ calls neither"):
        la_diffusers.LiteAttentionProcessor(_LocalDispatch())
    with pytest.raises(TypeError, match="is a torch.nn.Module"):
        la_diffusers.LiteAttentionProcessor(torch.nn.Linear(2, 2))
    processor = la_diffusers.LiteAttentionProcessor(_GlobalDispatch(), enable_skipping=False)
    x = torch.randn(1, 24, 32)
    torch.testing.assert_close(processor(None, x), _GlobalDispatch()(None, x), atol=1e-5, rtol=1e-5)
    processor(None, x)
    assert processor.lite_attention.step == 1  # both calls ran on the LiteAttention
    with pytest.raises(RuntimeError, match="made a second attention call in one pass"):
        processor(None, x, twice=True)
    processor(None, x)  # the failed pass left nothing behind
    # The text is found by the inner signature's parameter name, not by position.
    rotary = la_diffusers.LiteAttentionProcessor(_RotaryFirst(), enable_skipping=False)
    torch.testing.assert_close(rotary(None, x, (2.0, None)), _RotaryFirst()(None, x, (2.0, None)), atol=1e-5, rtol=1e-5)


def test_hunyuan_video_under_inference_mode():
    model = HunyuanVideo.model()
    x = HunyuanVideo.inputs()
    with torch.inference_mode():
        reference = HunyuanVideo.forward(model, x)
        attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
        out, routed, _ = routed_twice(HunyuanVideo, model, x, attns)
    assert routed
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)
    la_diffusers.uninstall(model)


def test_install_changes_nothing_module_wide_and_uninstall_restores_the_processors():
    """The routing lives in each installed processor (its own copy of the inner __call__): the
    diffusers modules' functions stay as they are, so a model without LiteAttention runs
    diffusers' and torch's attention exactly as before."""
    import diffusers.models.attention_processor as cogvideox_module
    import diffusers.models.transformers.transformer_hunyuan_video as hunyuan_module

    dispatch = hunyuan_module.dispatch_attention_fn
    installed, plain = CogVideoX.model(), CogVideoX.model()
    x = CogVideoX.inputs()
    before = CogVideoX.forward(plain, x)
    inner = [m.processor for m in installed.modules() if hasattr(m, "set_processor")]
    la_diffusers.install(installed, auto_branches=False)
    la_diffusers.install(HunyuanVideo.model(), auto_branches=False)
    assert cogvideox_module.F is torch.nn.functional and hunyuan_module.dispatch_attention_fn is dispatch
    assert torch.equal(CogVideoX.forward(plain, x), before)
    la_diffusers.uninstall(installed)
    la_diffusers.uninstall(installed)  # twice: nothing more to take out
    assert [m.processor for m in installed.modules() if hasattr(m, "set_processor")] == inner
    assert not installed._forward_pre_hooks and not installed._forward_hooks


def test_settings_diffusers_writes_on_a_processor_reach_the_wrapped_one():
    """diffusers sets _parallel_config (context parallelism) and _attention_backend on processors;
    the wrapped processor must see them (it passes _parallel_config to its attention calls)."""
    model = HunyuanVideo.model()
    la_diffusers.install(model, auto_branches=False)
    processors = [m.processor for m in model.modules() if isinstance(getattr(m, "processor", None),
                                                                     la_diffusers.LiteAttentionProcessor)]
    assert len(processors) == 2
    for p in processors:
        p._parallel_config = "a parallel config"
        assert p.inner._parallel_config == "a parallel config" and p._parallel_config == "a parallel config"
        p._parallel_config = None
    la_diffusers.uninstall(model)


@pytest.mark.parametrize("kind", MODELS)
def test_skipping_leaves_the_text_dense_on_each_branch(kind):
    """Threshold 0 skips every tile that does not raise a row's running max, so video tiles are
    skipped; the text's query tiles run dense and the tiles of the real text keys are never
    skipped, with each branch's own text length (HunyuanVideo 1.0 and 1.5) and state."""
    model = kind.model()
    video_tokens, tile = 3 * 8 * 8, 16
    attns = la_diffusers.install(model, threshold=0.0, cpu_tile=(tile, tile))
    real = {"cond": 5, "uncond": 2} if kind.padded_text else {"cond": TEXT_TOKENS, "uncond": TEXT_TOKENS}
    x = {name: kind.inputs(real_text=(n,), seed=1 + i) for i, (name, n) in enumerate(real.items())}
    for step, t in enumerate((900, 700, 500, 300)):
        la.set_step(model, step)
        for name in real:
            with la_diffusers.branch(name):
                assert torch.isfinite(kind.forward(model, x[name], t=t)).all()
    skipped_video = False
    for a in attns:
        for name, n in real.items():
            state = a.state(name)
            assert a.stats_for(name).calls == 4
            rows, keys = kind.text_positions(video_tokens, n)
            # The keys end at the real text (CogVideoX: no padding mask, every key).
            assert state.key.len_k == (keys.stop if kind.padded_text else video_tokens + TEXT_TOKENS)
            if kind is HunyuanVideo15:  # the padding rows cut off too
                assert state.key.len_q == keys.stop
            assert_text_kept(state, rows, keys)
            skipped_video |= not state.tile_mask().all()
    assert skipped_video


@pytest.mark.gpu
@pytest.mark.parametrize("kind", MODELS)
def test_on_the_gpu_kernel_dense_matches_diffusers_and_text_stays_dense(kind):
    """The same on CUDA in bfloat16 with head dim 64 (a kernel's head dim and tile)."""
    head_dim, frames, size = 64, 5, 32
    video_tokens = frames * (size // 2) ** 2  # 1280
    model = kind.model(head_dim).to("cuda", torch.bfloat16)

    def on_gpu(x):
        if isinstance(x, tuple):
            return tuple(on_gpu(y) for y in x)
        return x.to("cuda", torch.bfloat16 if x.is_floating_point() else x.dtype)

    x = on_gpu(kind.inputs(seed=2, frames=frames, size=size, head_dim=head_dim))
    reference = kind.forward(model, x).float()
    attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
    out, routed, _ = routed_twice(kind, model, x, attns)
    assert routed
    out = out.float()
    assert ((out - reference).norm() / reference.norm()).item() < 2e-2
    la_diffusers.uninstall(model)

    attns = la_diffusers.install(model, threshold=0.0)
    for step, t in enumerate((900, 700, 500)):
        la.set_step(model, step)
        with la_diffusers.branch("cond"):
            assert torch.isfinite(kind.forward(model, x, t=t)).all()
    real = 5 if kind.padded_text else TEXT_TOKENS
    for a in attns:
        assert a.stats_for("cond").calls == 3
        assert_text_kept(a.state("cond"), *kind.text_positions(video_tokens, real))
    if not kind.padded_text:  # (HunyuanVideo's random weights give flat attention at 128-row tiles: nothing skips)
        assert any(not a.state("cond").tile_mask().all() for a in attns)

"""The diffusers integration on joint video-text attention: a tiny HunyuanVideoTransformer3DModel
(text tokens appended to the video tokens, the text's padding masked out as keys), built from a
config with random weights. This tests the integration (routing, the padding mask, the text
ranges, branches), not quality."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import lite_attention as la  # noqa: E402
from lite_attention.integrations import diffusers as la_diffusers  # noqa: E402
from lite_attention.integrations.diffusers import _kept_key_prefix  # noqa: E402

TEXT_TOKENS = 8  # the padded text length; each test picks how many of them are real


def tiny_hunyuan_video(head_dim=32):
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    rope_axes = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)  # (frames, rows, columns): sums to head_dim
    model = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                           attention_head_dim=head_dim, num_layers=1, num_single_layers=1,
                                           num_refiner_layers=1, text_embed_dim=32, pooled_projection_dim=16,
                                           rope_axes_dim=rope_axes)
    return model.eval()


def inputs(real_text, seed=0, frames=3, size=16):
    """Latents of frames x size/2 x size/2 video tokens, and per batch row a text of TEXT_TOKENS
    embeddings of which the first real_text[b] are real (the rest padding)."""
    g = torch.Generator().manual_seed(seed)
    batch = len(real_text)
    latents = torch.randn(batch, 4, frames, size, size, generator=g)
    text = torch.randn(batch, TEXT_TOKENS, 32, generator=g)
    text_mask = torch.stack([torch.arange(TEXT_TOKENS) < n for n in real_text]).long()
    pooled = torch.randn(batch, 16, generator=g)
    return latents, text, text_mask, pooled


def forward(model, latents, text, text_mask, pooled, t=500):
    batch, device = latents.shape[0], latents.device
    with torch.no_grad():
        return model(latents, torch.full((batch,), t, device=device), text, text_mask, pooled,
                     guidance=torch.full((batch,), 3000.0, device=device)).sample


def routed_twice(model, x, attns):
    """Runs the model twice; whether both passes' attention ran on the LiteAttention instances
    (their step counters advance on the second call)."""
    out = forward(model, *x)
    forward(model, *x)
    return out, all(a.step == 1 for a in attns), all(a.step == 0 for a in attns)


def assert_text_kept(state, video_tokens, real_text):
    """The keys end at the real text (its padding cut off); the query tiles holding text computed
    every key tile, and every query tile computed the key tiles holding the real text."""
    assert state.key.len_k == video_tokens + real_text
    bm, bn = state.key.tile
    kept = state.tile_mask()  # (B, H, query tiles, key tiles)
    assert kept[:, :, video_tokens // bm:, :].all(), "the text's query tile skipped a key tile"
    assert kept[..., video_tokens // bn:].all(), "a query tile skipped the real text"


def test_dense_lite_attention_matches_diffusers_with_padded_text():
    model = tiny_hunyuan_video()
    x = inputs(real_text=[5])
    reference = forward(model, *x)
    attns = la_diffusers.install(model, enable_skipping=False)
    assert len(attns) == 2  # the dual-stream and the single-stream block's joint attention, not the text refiner
    out, routed, _ = routed_twice(model, x, attns)
    assert routed  # the padding mask did not send the calls back to diffusers
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)
    la_diffusers.uninstall(model)


def test_a_batch_with_different_text_lengths_falls_through_to_diffusers():
    model = tiny_hunyuan_video()
    x = inputs(real_text=[5, 3])
    reference = forward(model, *x)
    attns = la_diffusers.install(model, enable_skipping=False)
    out, _, untouched = routed_twice(model, x, attns)
    assert untouched
    torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_kept_key_prefix_reads_only_key_padding_masks():
    keys = torch.arange(10)
    prefix = (keys < 7).view(1, 1, 1, 10)
    assert _kept_key_prefix(prefix, 1, 10) == 7
    assert _kept_key_prefix(prefix.view(1, 10), 3, 10) == 7  # one row for the whole batch
    assert _kept_key_prefix(torch.stack([keys < 7, keys < 7]).view(2, 1, 1, 10), 2, 10) == 7
    assert _kept_key_prefix(torch.stack([keys < 7, keys < 5]).view(2, 1, 1, 10), 2, 10) is None  # lengths differ
    assert _kept_key_prefix(((keys < 7) & (keys != 3)).view(1, 1, 1, 10), 1, 10) is None  # a hole
    assert _kept_key_prefix(torch.zeros(1, 1, 1, 10, dtype=torch.bool), 1, 10) is None  # nothing kept
    assert _kept_key_prefix(prefix.float(), 1, 10) is None  # an additive mask
    assert _kept_key_prefix(prefix.expand(1, 1, 10, 10).contiguous(), 1, 10) is None  # per query row
    assert _kept_key_prefix(prefix, 1, 12) is None  # another key count
    # The answer is kept per mask object and version: an in-place change is read again.
    prefix[..., 6] = False
    assert _kept_key_prefix(prefix, 1, 10) == 6


def test_skipping_leaves_the_text_dense_on_each_branch():
    """Video tiles are skipped; the text's query tile runs dense, and the key tile holding the
    real text is never skipped, with each branch's own text length."""
    model = tiny_hunyuan_video()
    video_tokens = 3 * 8 * 8
    tile = 16
    attns = la_diffusers.install(model, threshold=0.0, cpu_tile=(tile, tile))
    real = {"cond": 5, "uncond": 2}
    x = {name: inputs(real_text=[n], seed=1) for name, n in real.items()}
    for step, t in enumerate((900, 700, 500, 300)):
        la.set_step(model, step)
        for name in real:
            with la_diffusers.branch(name):
                assert torch.isfinite(forward(model, *x[name], t=t)).all()
    for a in attns:
        for name, n in real.items():
            assert a.stats_for(name).calls == 4
            assert_text_kept(a.state(name), video_tokens, n)
    video_tiles = video_tokens // tile
    assert any(not a.state(name).tile_mask()[:, :, :video_tiles, :video_tiles].all() for a in attns for name in real)


@pytest.mark.gpu
def test_on_the_gpu_kernel_dense_matches_diffusers_and_text_stays_dense():
    """The same on CUDA in bfloat16 with head dim 64 (a kernel's head dim and tile)."""
    model = tiny_hunyuan_video(head_dim=64).to("cuda", torch.bfloat16)
    frames, size = 5, 32
    video_tokens = frames * (size // 2) ** 2  # 1280
    latents, text, text_mask, pooled = inputs(real_text=[5], seed=2, frames=frames, size=size)
    x = (latents.to("cuda", torch.bfloat16), text.to("cuda", torch.bfloat16), text_mask.cuda(),
         pooled.to("cuda", torch.bfloat16))
    reference = forward(model, *x).float()
    attns = la_diffusers.install(model, enable_skipping=False)
    out, routed, _ = routed_twice(model, x, attns)
    assert routed
    out = out.float()
    assert ((out - reference).norm() / reference.norm()).item() < 2e-2
    la_diffusers.uninstall(model)

    attns = la_diffusers.install(model, threshold=-2.0)
    for step, t in enumerate((900, 700, 500)):
        la.set_step(model, step)
        with la_diffusers.branch("cond"):
            assert torch.isfinite(forward(model, *x, t=t)).all()
    for a in attns:
        assert a.stats_for("cond").calls == 3
        assert_text_kept(a.state("cond"), video_tokens, 5)

"""The text renderer (``lexlm.text.render``): geometry, truncation, determinism, non-Latin
text, locality of typos, and the glyph cache against direct drawing."""

import math

import numpy as np
import pytest

from lexlm.errors import FontError
from lexlm.text.render import BLACK, KERN_GLYPHS, WHITE, RenderConfig, Renderer, RenderStats

SENTENCES = [
    "A man is playing a flute while another man plays the guitar on a stage.",
    "Three dogs run across a snowy field, chasing a red ball (quickly!).",
    "Γειά σου κόσμε — Привет, мир! Ça va? 42 €.",
]


@pytest.fixture(scope="module")
def renderer():
    return Renderer(RenderConfig(max_patches=64))


def test_geometry_end_patch_and_mask(renderer):
    out = renderer.render([*SENTENCES[:2], ""])
    assert out.images.shape == (3, 16, 64 * 16)
    patches = out.patches()
    assert patches.shape == (3, 64, 16, 16)
    for i, text in enumerate([*SENTENCES[:2], ""]):
        n = int(out.num_patches[i])
        width = sum(round(renderer.font.getlength(ch)) for ch in text)  # within rounding
        assert abs(n - math.ceil((2 + width + 2) / 16)) <= 1
        assert np.all(patches[i, n] == BLACK)  # the end-of-text patch
        assert np.all(patches[i, n + 1 :] == WHITE)
        assert out.mask[i].sum() == n + 1 and out.mask[i, : n + 1].all()
        assert np.all(out.images[i, :, :2] == WHITE)  # the text starts at x = 2
    assert out.num_patches[2] == 1  # an empty text: one (blank) text patch, then the end
    assert (patches[0, : out.num_patches[0]] < 128).any()  # there is ink


def test_overlong_text_is_truncated_and_counted(renderer):
    stats = RenderStats()
    out = renderer.render(["word " * 200, "short"], stats)
    assert out.num_patches[0] == 63 and out.mask[0].all()
    assert stats.truncated_texts == 1 and 0 < stats.truncated_chars < 1000
    assert stats.texts == 2 and stats.chars == 1000 + 5 - stats.truncated_chars
    assert np.all(out.patches()[0, 63] == BLACK)


def test_deterministic_whatever_the_cache_order():
    a, b = Renderer(RenderConfig(max_patches=64)), Renderer(RenderConfig(max_patches=64))
    b.render(SENTENCES[::-1])  # fills b's glyph cache in another order
    np.testing.assert_array_equal(a.render(SENTENCES).strips, b.render(SENTENCES).strips)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint["font_sha256"]) == 64


def test_non_latin_text_has_glyphs_and_missing_glyphs_are_counted(renderer):
    stats = RenderStats()
    out = renderer.render([SENTENCES[2]], stats)
    assert stats.missing_glyphs == 0 and (out.images[0] < 128).any()
    cov = renderer.coverage()
    for block in ("Basic Latin", "Latin-1 Supplement", "Cyrillic"):
        assert cov[block][0] == cov[block][1]
    assert cov["Greek and Coptic"][0] >= 130
    stats = RenderStats()
    out = renderer.render(["漢字 ok"], stats)  # no CJK in DejaVu Sans: drawn as boxes, counted
    assert stats.missing_glyphs == 2 and out.num_patches[0] >= 1


def test_a_typo_changes_only_nearby_patches(renderer):
    text = SENTENCES[0]
    i = text.index("flute") + 2  # the 'u'
    same = [ch for ch in "abcdefghijklmnopqrstvwxyz"
            if renderer.font.getlength(ch) == renderer.font.getlength("u")]  # fmt: skip
    assert same, "no letter with the advance of 'u'"
    typo = text[:i] + same[0] + text[i + 1 :]
    a, b = (renderer.render([t]).patches()[0] for t in (text, typo))
    changed = np.flatnonzero((a != b).any(axis=(1, 2)))
    x = 2 + renderer.font.getlength(text[:i])
    assert len(changed) >= 1 and set(changed) <= {int(x // 16), int((x + 9) // 16)}
    # insertions and deletions shift what follows, but never touch the patches before them
    for edited in (text[:i] + "x" + text[i:], text[:i] + text[i + 1 :]):
        c = renderer.render([edited]).patches()[0]
        first = np.flatnonzero((a != c).any(axis=(1, 2)))[0]
        assert first >= int(x // 16)


def test_glyph_cache_matches_direct_drawing_within_tolerance(renderer):
    out = renderer.render(SENTENCES)
    for i, text in enumerate(SENTENCES):
        direct = renderer.render_direct(text).astype(int)
        n = int(out.num_patches[i])
        end = np.flatnonzero((direct == BLACK).all(axis=0))[0] // 16
        assert abs(end - n) <= 1
        region = slice(0, min(n, end) * 16)
        diff = np.abs(out.images[i][:, region].astype(int) - direct[:, region]).mean() / 255
        assert diff < 0.01  # the documented tolerance (overlapping ink)


def test_output_buffer_reuse_and_bad_arguments(renderer, tmp_path):
    buf = np.zeros((4, 64 * 16, 16), np.uint8)
    reused = renderer.render(SENTENCES, out=buf)
    np.testing.assert_array_equal(reused.strips, renderer.render(SENTENCES).strips)
    assert np.shares_memory(reused.strips, buf)
    with pytest.raises(ValueError, match="render: out"):
        renderer.render(SENTENCES, out=np.zeros((2, 64 * 16, 16), np.uint8))
    with pytest.raises(ValueError, match=r"render\.font_path"):
        Renderer(RenderConfig(font_path=str(tmp_path / "none.ttf")))
    with pytest.raises(ValueError, match=r"render\.font_px"):
        RenderConfig(font_px=20.0)
    odd = Renderer(RenderConfig(patch=8, max_patches=200, font_px=7.0))  # the generic path
    small = odd.render(SENTENCES[:1])
    assert small.patches().shape == (1, 200, 8, 8)
    assert np.all(small.patches()[0, small.num_patches[0]] == BLACK)


def _drawn_apart(renderer, text: str) -> np.ndarray:
    """[16, W] strip of ``text`` with each glyph drawn alone by Pillow at the renderer's rounded
    pen position (advances plus Pillow's pair kerning), composited darkest-wins, then the end
    patch: what the glyph cache must give where no glyph's ink overlaps another's."""
    from PIL import Image, ImageDraw

    c, f = renderer.cfg, renderer.font
    strip = np.full((c.patch, c.width), WHITE, np.uint8)
    pen = 0.0
    for i, ch in enumerate(text):
        img = Image.new("L", (c.width, c.patch), WHITE)
        x = c.left_pad + int(np.rint(pen))
        ImageDraw.Draw(img).text((x, renderer.y), ch, font=f, fill=BLACK)
        strip = np.minimum(strip, np.asarray(img, np.uint8))
        pen += f.getlength(ch)
        if i + 1 < len(text):
            pen += f.getlength(ch + text[i + 1]) - f.getlength(ch) - f.getlength(text[i + 1])
    eos = math.ceil((c.left_pad + int(np.rint(pen)) + c.right_pad) / c.patch)
    strip[:, eos * c.patch :] = WHITE
    strip[:, eos * c.patch : (eos + 1) * c.patch] = BLACK
    return strip


def test_positive_kerning_stays_in_the_glyphs_cell():
    """'-' before 'G' is kerned apart (+0.48 px): after 1 or 2 spaces (pen at 4.23, 8.47 px)
    the hyphen spans 6 columns, one more than ceil(its advance of 4.81 px). Its cell must hold
    them: before cells were sized for kerning, the 6th column was G's first (G drawn next in
    the atlas), a stray column of ink."""
    f = Renderer(RenderConfig(max_patches=8)).font
    assert f.getlength("-G") - f.getlength("-") - f.getlength("G") > 0.4  # the kerning
    for spaces in range(6):
        renderer = Renderer(RenderConfig(max_patches=8))  # fresh: '-' then 'G' in the atlas
        text = " " * spaces + "-G"
        out = renderer.render([text]).images[0]
        np.testing.assert_array_equal(out, _drawn_apart(renderer, text), err_msg=repr(text))


def test_every_glyphs_drawn_width_fits_its_cell():
    """The default font's whole cache (every code point of its cmap, kerning among the first
    KERN_GLYPHS): the most columns a glyph can span, floor(advance + its largest kerning) + 1,
    is within its atlas cell; and a text of every kerned pair lays out inside the cells."""
    r = Renderer(RenderConfig(max_patches=8))
    cps = sorted(r.cmap)
    r.render(["".join(map(chr, cps))])  # caches every glyph (the text is cut, not the cache)
    assert len(r._cell_arr) == len(cps) - 2  # U+2028, U+2029 are line breaks: drawn as spaces
    adv, kern, cell = r._width_arr, r._kern, r._cell_arr
    assert kern.shape == (KERN_GLYPHS, KERN_GLYPHS) and kern.max() > 0.9  # there is kerning
    most = adv.copy()
    most[:KERN_GLYPHS] += np.maximum(kern.max(axis=1), 0.0)
    assert np.all(np.floor(most) + 1 <= cell)
    assert np.all(adv[:KERN_GLYPHS, None] + kern >= 0)  # no pair moves the pen back
    # the layout of all kerned pairs at once: each glyph's span against its cell
    chars = np.asarray(r._chars[:KERN_GLYPHS])
    text = "".join(map(chr, np.stack(np.meshgrid(chars, chars), -1).reshape(-1)))
    ids = r._ids(text)
    step = adv[ids].copy()
    step[:-1] += kern[ids[:-1], ids[1:]]
    end = np.rint(np.cumsum(step)).astype(np.int64)
    widths = np.diff(end, prepend=0)
    assert widths.min() >= 0 and np.all(widths <= cell[ids])
    assert np.any(widths > np.ceil(adv[ids]))  # spans past ceil(advance) occur and fit


def test_wrong_glyph_metrics_are_one_clear_error(monkeypatch):
    """A FreeType that reports a negative advance (or an absurd pair kerning) is a FontError
    naming the font and the glyph, raised when the glyph is cached, never numpy's
    'repeats may not contain negative values' mid-render."""
    cases = [
        (lambda t, real: -3.0 if t == "q" else real(t), "quick", "'q'"),
        (lambda t, real: 99.0 if t == "ui" else real(t), "quick", "'ui'"),
        (lambda t, real: float("nan") if t == "k" else real(t), "k", "'k'"),
    ]
    for wrong, text, glyph in cases:
        r = Renderer(RenderConfig(max_patches=8))
        real = r.font.getlength
        monkeypatch.setattr(r.font, "getlength", lambda t, *a, real=real, w=wrong: w(t, real))
        with pytest.raises(FontError, match=r"DejaVuSans\.ttf") as e:
            r.render([text])
        assert glyph in str(e.value) and "\n" not in str(e.value)


def test_unicode_line_separators_become_spaces(renderer):
    """U+2028 / U+2029 (which Pillow's layout refuses alone) render as spaces."""
    a = renderer.render(["one\u2029two\u2028three\x0bfour"]).strips
    np.testing.assert_array_equal(a, renderer.render(["one two three four"]).strips)

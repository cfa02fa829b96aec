"""Text to a 16-pixel grayscale strip cut into 16 x 16 patches (the PIXEL input; Rust et al.,
ICLR 2023), rendered from a per-glyph cache with one vectorised gather per sentence.

Geometry (PIXEL's defaults, ``RenderConfig``):

* a strip ``patch`` = 16 px high and ``max_patches * 16`` px wide, white (255) with dark text;
* the text starts at x = ``left_pad`` = 2, vertically centred on the font's line box;
* after it, ``right_pad`` = 2 px, rounded up to the next patch boundary: that patch index is
  the number of text patches n, and patch n is the black (0) end-of-text patch;
* the attention mask covers patches 0 .. n (the text patches plus the end patch);
* text that does not fit in ``max_patches - 1`` patches is cut at the last whole character that
  fits; the cut characters are counted (``RenderStats.truncated_chars``), never dropped silently.

Font: DejaVu Sans (``DejaVuSans.ttf``), the copy that the matplotlib wheel ships (a declared
dependency; DejaVu fonts licence, free to redistribute), at 8 pt x 120 dpi = 13.33 px like
PIXEL. It covers Latin (Basic, Latin-1, Extended-A/B), Greek and Cyrillic; ``coverage()``
gives the exact counts per block. A character without a glyph is drawn as the font's missing-
glyph box and counted (``RenderStats.missing_glyphs``), so it still occupies its place. Line
breaks (``str.splitlines``' separators) and tabs become spaces (PIXEL does the same for
newlines).

Speed: each distinct character is drawn once by FreeType (through Pillow) into a column atlas;
the pen moves by the exact fractional advances plus pair kerning (Pillow's pair advance minus
the two single advances, for the first ``KERN_GLYPHS`` distinct characters), and each glyph
owns the columns from its rounded pen position to the next glyph's. That span is at most
floor(advance + kerning) + 1 columns, so each glyph's atlas cell is floor(advance + one em) + 1
columns wide (its own ink or background past the advance): a positive kerning never reaches
into the next glyph's cell. A batch of sentences is then one vectorised gather of atlas
columns and one copy per sentence. Drawing whole sentences with Pillow (``render_direct``)
differs only where neighbouring glyphs' ink overlaps the next cell: on the test sentences the
mean absolute difference over the text is below 1% of full scale (``tests/test_render.py``
asserts it; ``bench/render.py`` reports it with the speed ratio).

Metrics are checked as the cache grows (``FontError``, naming the font and the glyph): every
advance finite and within [0, the font's ``hhea.advanceWidthMax``], every pair kerning at most
one em and never making a glyph's advance negative. A process whose FreeType gives wrong
metrics (seen with Pango/cairo loaded) gets that one line, not a numpy error mid-render.

Determinism: the output depends only on the text, the font file (its SHA-256 is recorded in
``Renderer.fingerprint``) and Pillow's FreeType build, so it is identical on any machine with
the same package versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Sequence

import numpy as np
from jaxtyping import Bool, Int32, UInt8

from lexlm.errors import FontError

FONT_NAME = "DejaVuSans.ttf"
KERN_GLYPHS = 512  # pair kerning is applied between the first 512 distinct characters seen
WHITE, BLACK = 255, 0
BLOCKS = {  # name: (first, last) code point
    "Basic Latin": (0x20, 0x7E),
    "Latin-1 Supplement": (0xA0, 0xFF),
    "Latin Extended-A": (0x100, 0x17F),
    "Latin Extended-B": (0x180, 0x24F),
    "Greek and Coptic": (0x370, 0x3FF),
    "Cyrillic": (0x400, 0x4FF),
}


def default_font_path() -> str:
    """DejaVu Sans from the installed matplotlib wheel's font folder."""
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", FONT_NAME)


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    patch: int = 16  # strip height and patch width, pixels
    max_patches: int = 529  # PIXEL 529; Pixel-Linguist 64
    font_px: float = 8 * 120 / 72  # PIXEL: 8 pt at 120 dpi
    left_pad: int = 2
    right_pad: int = 2
    font_path: str = ""  # '' = DejaVu Sans from matplotlib

    def __post_init__(self):
        if self.patch < 4 or self.max_patches < 2:
            raise ValueError(
                f"render: patch must be >= 4 and max_patches >= 2, got {self.patch}, "
                f"{self.max_patches}"
            )
        if not 0 < self.font_px <= self.patch:
            raise ValueError(f"render.font_px: must be in (0, patch], got {self.font_px}")

    @property
    def width(self) -> int:
        return self.patch * self.max_patches


@dataclasses.dataclass
class RenderStats:
    texts: int = 0
    chars: int = 0
    truncated_texts: int = 0
    truncated_chars: int = 0  # characters cut because the text did not fit
    missing_glyphs: int = 0  # characters drawn as the missing-glyph box


@dataclasses.dataclass(frozen=True)
class Rendered:
    strips: UInt8[np.ndarray, "N W H"]  # column-major strips (one row per pixel column)
    num_patches: Int32[np.ndarray, " N"]  # text patches n (the end patch is patch n)
    mask: Bool[np.ndarray, "N P"]  # patches 0 .. n

    @property
    def images(self) -> UInt8[np.ndarray, "N H W"]:
        """[N, 16, W] images, 255 = background (a view)."""
        return self.strips.transpose(0, 2, 1)

    def patches(self) -> UInt8[np.ndarray, "N P H H"]:
        """[N, max_patches, 16, 16] (rows, columns) in left-to-right order (a view)."""
        n, w, h = self.strips.shape
        return self.strips.reshape(n, w // h, h, h).transpose(0, 1, 3, 2)


_SPACES = str.maketrans(dict.fromkeys("\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _clean(text: str) -> str:
    return text.replace("\r\n", " ").translate(_SPACES)


class Renderer:
    """``Renderer(cfg).render(texts) -> Rendered``; keeps its glyph cache between calls."""

    def __init__(self, cfg: RenderConfig | None = None):
        from fontTools.ttLib import TTFont
        from PIL import ImageFont

        self.cfg = cfg or RenderConfig()
        path = self.cfg.font_path or default_font_path()
        if not os.path.isfile(path):
            raise ValueError(f"render.font_path: no font file at {path}")
        with open(path, "rb") as f:
            data = f.read()
        self.font_path = path
        self.font_sha256 = hashlib.sha256(data).hexdigest()
        self.font = ImageFont.truetype(path, self.cfg.font_px)
        tt = TTFont(path, lazy=True)
        self.cmap = frozenset(tt.getBestCmap())
        em = self.cfg.font_px / tt["head"].unitsPerEm
        self.max_advance = tt["hhea"].advanceWidthMax * em  # px, the font's widest advance
        self.max_kern = self.cfg.font_px  # px: one em, what a cell leaves for kerning
        ascent, descent = self.font.getmetrics()
        self.y = (self.cfg.patch - (ascent + descent)) // 2
        # Column atlas [columns, 16] (one row per pixel column, so that a gather copies
        # contiguous 16-byte rows): glyph g owns rows start[g] .. start[g] + width[g].
        self._columns = np.zeros((0, self.cfg.patch), np.uint8)
        self._pending: list[np.ndarray] = []
        self._n_cols = 0
        self._start: list[int] = []
        self._cell: list[int] = []  # atlas columns of each glyph
        self._width: list[float] = []  # advances, px
        self._has: list[bool] = []
        self._chars: list[int] = []
        self._kern = np.zeros((0, 0), np.float64)  # [G, G] pair kerning, px (G <= 512)
        self._lut = np.full(0x10000, -1, np.int32)  # BMP code point -> glyph id
        self._astral: dict[int, int] = {}

    @property
    def fingerprint(self) -> dict:
        import PIL

        return {"font": os.path.basename(self.font_path), "font_sha256": self.font_sha256,
                "font_px": self.cfg.font_px, "pillow": PIL.__version__}  # fmt: skip

    def has_glyph(self, char: str) -> bool:
        return ord(char) in self.cmap

    def coverage(self) -> dict[str, tuple[int, int]]:
        """Per Unicode block: (code points with a glyph, code points in the block)."""
        return {
            name: (sum(cp in self.cmap for cp in range(a, b + 1)), b - a + 1)
            for name, (a, b) in BLOCKS.items()
        }

    # -- the glyph cache ---------------------------------------------------------------------
    def _bad_metric(self, what: str) -> FontError:
        return FontError(
            f"render: font {self.font_path} gives {what} (the glyph metrics are wrong in this "
            "process, e.g. another FreeType loaded with Pango/cairo; render in a process "
            "without it, or set render.font_path to another font)"
        )

    def _length(self, text: str) -> float:
        try:
            return float(self.font.getlength(text))
        except (RuntimeError, OSError) as e:  # Pillow's layout refused the text
            raise self._bad_metric(f"no advance for {text!r} ({e})") from None

    def _advance(self, char: str) -> float:
        """The checked advance of one character, px."""
        adv = self._length(char)
        if not (math.isfinite(adv) and 0 <= adv <= self.max_advance + 1):
            raise self._bad_metric(
                f"{char!r} (U+{ord(char):04X}) an advance of {adv:g} px, outside [0, "
                f"{self.max_advance:.2f}] (its hhea.advanceWidthMax)"
            )
        return adv

    def cell_width(self, advance: float) -> int:
        """Atlas columns of a glyph of ``advance`` px: the most a glyph can span, floor(advance
        + kerning) + 1 (rounded pen positions), for any kerning up to ``max_kern``."""
        return math.floor(advance + self.max_kern) + 1

    def _draw_glyph(self, char: str, advance: float) -> np.ndarray:
        """[cell_width(advance), 16] columns of one character drawn at x = 0 (ink past the
        advance kept up to the cell's end), 255 background."""
        from PIL import Image, ImageDraw

        img = Image.new("L", (self.cell_width(advance), self.cfg.patch), WHITE)
        ImageDraw.Draw(img).text((0, self.y), char, font=self.font, fill=BLACK)
        return np.asarray(img, np.uint8).T.copy()

    def _glyph_id(self, cp: int) -> int:
        gid = self._lut[cp] if cp < 0x10000 else self._astral.get(cp, -1)
        if gid >= 0:
            return int(gid)
        advance = self._advance(chr(cp))
        cols = self._draw_glyph(chr(cp), advance)
        gid = len(self._start)
        self._start.append(self._n_cols)
        self._cell.append(cols.shape[0])
        self._width.append(advance)
        self._has.append(cp in self.cmap)
        self._chars.append(cp)
        self._pending.append(cols)
        self._n_cols += cols.shape[0]
        if cp < 0x10000:
            self._lut[cp] = gid
        else:
            self._astral[cp] = gid
        return gid

    def _flush(self) -> None:
        if self._pending:
            self._columns = np.concatenate([self._columns, *self._pending], axis=0)
            self._pending = []
            self._start_arr = np.asarray(self._start, np.int64)
            self._cell_arr = np.asarray(self._cell, np.int64)
            self._width_arr = np.asarray(self._width, np.float64)
            self._has_arr = np.asarray(self._has, bool)
            self._extend_kerning()

    def _extend_kerning(self) -> None:
        """Pair kerning of every new glyph against all cached ones (Pillow's own pair advance
        minus the two single advances), for glyph ids below ``KERN_GLYPHS``; a pair beyond
        one em, or one that moves the pen back, is a ``FontError``."""
        old, new = self._kern.shape[0], min(len(self._start), KERN_GLYPHS)
        if new == old:
            return
        chars = [chr(cp) for cp in self._chars[:new]]
        kern = np.zeros((new, new), np.float64)
        kern[:old, :old] = self._kern
        adv = self._width
        for j in range(old, new):
            for i in range(new):
                for a, b in ((i, j), (j, i)):
                    kern[a, b] = self._length(chars[a] + chars[b]) - adv[a] - adv[b]
        kern[np.abs(kern) < 1e-9] = 0.0
        step = np.asarray(adv[:new])[:, None] + kern  # the pen's move after a, before b
        bad = ~np.isfinite(kern) | (kern > self.max_kern) | (step < -1e-9)
        if bad.any():
            a, b = (int(x[0]) for x in np.nonzero(bad))
            raise self._bad_metric(
                f"the pair {chars[a] + chars[b]!r} a kerning of {kern[a, b]:g} px after an "
                f"advance of {adv[a]:g} px (kerning must be at most one em, "
                f"{self.max_kern:.2f} px, and leave the advance non-negative)"
            )
        self._kern = kern

    def _ids(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        if not len(cps):
            return np.zeros(0, np.int64)
        bmp = cps < 0x10000
        ids = np.where(bmp, self._lut[np.where(bmp, cps, 0)], -1)
        unknown = ids < 0
        if unknown.any():
            for i in np.flatnonzero(unknown):
                ids[i] = self._glyph_id(int(cps[i]))
            self._flush()
        return ids.astype(np.int64)

    # -- rendering ---------------------------------------------------------------------------
    def render(
        self,
        texts: Sequence[str],
        stats: RenderStats | None = None,
        out: UInt8[np.ndarray, "M W H"] | None = None,
    ) -> Rendered:
        """Renders every text (one vectorised pass over the whole batch); adds what was cut or
        missing to ``stats`` when given. ``out`` ([>= N, W, 16] uint8) is reused for the strips
        instead of allocating (a data loader's batch buffer): at 529 patches a strip is 135 KB,
        and first-touching fresh memory costs more than drawing the text."""
        c = self.cfg
        n = len(texts)
        stats = stats if stats is not None else RenderStats()
        cleaned = [_clean(t) for t in texts]
        lens = np.fromiter(map(len, cleaned), np.int64, n)
        self._flush()
        ids = self._ids("".join(cleaned))  # [chars of all texts]
        first = np.cumsum(lens) - lens  # index of each text's first character
        text_of = np.repeat(np.arange(n), lens)
        advances = self._width_arr[ids] if len(ids) else np.zeros(0, np.float64)
        if len(ids) > 1 and self._kern.size:  # kerning moves the pen after the pair's first
            a, b = ids[:-1], ids[1:]
            k = len(self._kern)
            inside = (a < k) & (b < k) & (text_of[:-1] == text_of[1:])
            pair = np.where(inside, self._kern[np.minimum(a, k - 1), np.minimum(b, k - 1)], 0.0)
            advances = advances.copy()
            advances[:-1] += pair
        cum = np.cumsum(advances)
        before = np.concatenate([[0.0], cum])[first]  # pen advance of all earlier texts
        # the pen moves by the exact (fractional) advances; each glyph starts at the rounded
        # pen position and owns the columns up to the next glyph's start
        end = np.rint(cum - before[text_of]).astype(np.int64)
        widths = end - np.concatenate([[0], end[:-1]])
        widths[first[lens > 0]] = end[first[lens > 0]]
        room = (c.max_patches - 1) * c.patch - c.left_pad - c.right_pad
        keep = end <= room  # a prefix of each text (ends grow along a text)
        kept = np.bincount(text_of[keep], minlength=n)
        total = np.where(kept > 0, end[np.maximum(first + kept - 1, 0)] if len(end) else 0, 0)
        if out is None:
            strips = np.full((n, c.width, c.patch), WHITE, np.uint8)  # [N, W, H]
        else:
            if out.shape[0] < n or out.shape[1:] != (c.width, c.patch):
                raise ValueError(f"render: out must be [>= {n}, {c.width}, {c.patch}] uint8")
            strips = out[:n]
            strips.fill(WHITE)
        kid, kw = ids[keep], widths[keep]
        eos = np.minimum(-(-(c.left_pad + total + c.right_pad) // c.patch), c.max_patches - 1)
        if len(kid) and kw.min() < 0:  # the checks above rule this out; never a numpy error
            g = int(kid[np.argmin(kw)])
            raise self._bad_metric(f"{chr(self._chars[g])!r} a negative width in a text")
        if len(kid):
            # A text's glyph cells abut, so its columns are one run of atlas rows: gather every
            # run at once, then copy each text's run into its strip.
            kcum = np.cumsum(kw)
            src = np.arange(int(kcum[-1])) + np.repeat(self._start_arr[kid] - (kcum - kw), kw)
            if c.patch == 16:  # one 16-pixel column = one complex128 item (numpy's fast take)
                runs = self._columns.view(np.complex128)[:, 0].take(src)
                rows = strips.view(np.complex128)[..., 0]
            else:
                runs, rows = self._columns[src], strips
            bounds = np.concatenate([[0], np.cumsum(total)])
            for i in np.flatnonzero(total):
                rows[i, c.left_pad : c.left_pad + total[i]] = runs[bounds[i] : bounds[i + 1]]
        for i, e in enumerate(eos.tolist()):
            strips[i, e * c.patch : (e + 1) * c.patch] = BLACK
        cut = lens - kept
        stats.texts += n
        stats.chars += int(kept.sum())
        stats.truncated_texts += int((cut > 0).sum())
        stats.truncated_chars += int(cut.sum())
        stats.missing_glyphs += int(len(kid) - self._has_arr[kid].sum()) if len(kid) else 0
        mask = np.arange(c.max_patches)[None, :] <= eos[:, None]
        return Rendered(strips, eos.astype(np.int32), mask)

    def render_direct(self, text: str) -> UInt8[np.ndarray, "H W"]:
        """The same strip drawn by Pillow in one call for the whole text (kerning, sub-pixel
        advances, overlapping ink): the reference the glyph cache is measured against."""
        from PIL import Image, ImageDraw

        c = self.cfg
        img = Image.new("L", (c.width, c.patch), WHITE)
        text = _clean(text)
        ImageDraw.Draw(img).text((c.left_pad, self.y), text, font=self.font, fill=BLACK)
        out = np.asarray(img, np.uint8).copy()
        total = round(self.font.getlength(text))
        eos = min(math.ceil((c.left_pad + total + c.right_pad) / c.patch), c.max_patches - 1)
        out[:, eos * c.patch :] = WHITE
        out[:, eos * c.patch : (eos + 1) * c.patch] = BLACK
        return out

"""Video quality diagnosis (视频质量诊断): is the picture a camera sends usable?

Input: a few frames sampled over a few seconds of the decoded stream, each already downscaled
to `analysis_width` pixels wide (RGB, uint8, H x W x 3). Output: measures (ratios and factors
a rule can compare) and diagnoses (0/1), each diagnosis with the sample frame that showed it,
as a small JPEG for the ticket.

Measures (over the samples: the median, except motion: the largest change between two
consecutive samples):
  brightness      mean luma (Rec. 601 weights on full-range RGB), 0 black .. 1 white
  contrast        luma spread: 95th minus 5th percentile, 0..1
  sharpness       variance of the Laplacian of the luma divided by the variance of the luma:
                  how much of the picture's contrast is in fine detail, independent of
                  exposure and contrast; 0 for a featureless picture
  motion          fraction of pixels whose luma changed by more than `motion_pixel_delta`
                  between two consecutive samples (the largest over the sample)
  cast factor     CIE L*a*b* colour cast factor K = D / M (the "equivalent circle" method):
                  D = distance of the mean (a*, b*) from neutral grey, M = spread of (a*, b*)
                  around that mean; D is reported too, as the chroma offset
  uniform area    share of the frame covered by the largest connected area of flat blocks
                  (16x16 pixels at the analysis width) of one colour

Diagnoses, and the order they are judged in (a worse condition hides what it makes
meaningless; every measure is still reported):
  dark / overexposed   brightness below / above its threshold; nothing else is judged
  low_contrast         contrast below its threshold; blurred, occluded and frozen are not
                       judged (no detail to judge them by), colour cast still is
  blurred              sharpness below its threshold
  color_cast           cast factor and chroma offset both above their thresholds
  occluded             uniform area above its threshold while the rest still shows the
                       scene (a picture uniform all over is low contrast, dark or
                       overexposed instead)
  frozen               motion below its threshold over at least `frozen_min_seconds`
Signal loss (no frame at all) is the RTSP probe's `no_frames`, not judged here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from itertools import pairwise

import numpy as np

DIAGNOSES = ("dark", "overexposed", "low_contrast", "blurred", "color_cast", "occluded",
             "frozen")
BLOCK = 16  # pixels per side of a block, for the uniform-area measure


@dataclass(frozen=True)
class QualityThresholds:
    """Every threshold of the diagnosis, with its default. Values are ratios 0-1 unless said.

    The defaults were set on generated test pictures (agent/demo/rtsp_server.py: healthy
    scrolling test patterns against each faulty kind) with wide margins either side, and on
    what the measures mean for real cameras, noted per field. A site tunes them in the agent's
    configuration; the measures are exported, so a threshold can be chosen from a week of
    real values.
    """

    analysis_width: int = 320
    """Frames are downscaled to this width (height keeps the aspect) before any measure:
    bounds the cost per frame whatever the camera's resolution; 320 keeps enough detail to
    see focus and small moving objects."""

    samples: int = 8
    """Frames analysed per probe, spread evenly over the decoded seconds (every frame is
    decoded, only these are measured): 8 over 5 s is one every ~0.6 s."""

    motion_pixel_delta: float = 0.02
    """A pixel counts as changed when its luma differs by more than this (0.02 = 5 of 255
    levels) between two samples: above the coding noise of a repeated still picture, below
    the sensor noise of most live cameras."""

    frozen_motion_ratio: float = 0.002
    """Frozen when, between every two consecutive samples, fewer than this share of pixels
    changed (0.2 %: a repeated picture changes ~0 %; a scene with one walking person far
    away still changes ~0.5 %)."""

    frozen_min_seconds: float = 2.0
    """Frozen is judged only over at least this many seconds of samples: a still scene for
    under 2 s is common. A perfectly still, noiseless scene looks frozen: let a rule require
    it on several probes in a row."""

    dark_brightness: float = 0.08
    """Too dark (or black) when the mean luma is below this (0.08 = 20 of 255 levels): a night
    scene lit by IR or street lights is well above; a lens cap, a failed IR illuminator or
    video loss (black) is below."""

    overexposed_brightness: float = 0.8
    """Overexposed (washed out, white) when the mean luma is above this: a normal day scene
    averages 0.3-0.6; a sun-blinded or failed-iris camera, or a white screen, is above."""

    low_contrast_ratio: float = 0.2
    """Low contrast (fog, condensation, dirty dome, failed gain) when the luma spread
    between the 5th and 95th percentiles is below this (a normal scene spreads 0.5-0.9)."""

    blurred_sharpness: float = 0.015
    """Blurred (out of focus, dirty lens) when the normalised Laplacian variance is below
    this: the sharp test patterns score 0.06 (large flat bars) to 10 (fine detail), a
    10x-defocused scene 0.001."""

    color_cast_factor: float = 1.0
    """Colour cast when the cast factor K = D / M is above this (the equivalent-circle
    method: K > 1 means the mean colour lies outside the spread of the picture's colours, so
    the whole picture is tinted), ..."""

    color_cast_offset: float = 12.0
    """... and the mean chroma is at least this far from neutral grey, in CIE a*b* units (a
    normal scene's mean stays within ~10; a white-balance failure moves it 20-60)."""

    occluded_area_ratio: float = 0.6
    """Occluded (covered lens, sprayed or turned camera) when one connected flat area of one
    colour covers more than this share of the frame. A clear sky or a plain wall rarely fills
    60 % of a surveillance view."""

    uniform_flatness: float = 0.02
    """A block is flat when its luma standard deviation is below this (0.02 = 5 levels)."""

    uniform_color_tolerance: float = 0.08
    """Flat blocks belong to one uniform area when their mean R, G and B are each within this
    of the area's first block."""

    evidence_width: int = 320
    """Evidence JPEGs are at most this wide (and never wider than the analysed frames)."""

    evidence_quality: int = 70
    """JPEG quality of the evidence (70: ~10-20 KB at 320x240, enough to see the fault)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{f.name} must be a number >= 0, not {value!r}")
        if self.analysis_width < 32 or self.evidence_width < 16:
            raise ValueError("analysis_width must be >= 32 and evidence_width >= 16")
        if self.samples < 1:
            raise ValueError("samples must be >= 1")
        if not 1 <= self.evidence_quality <= 95:
            raise ValueError("evidence_quality must be 1-95")
        for name in ("motion_pixel_delta", "frozen_motion_ratio", "dark_brightness",
                     "overexposed_brightness", "low_contrast_ratio", "occluded_area_ratio",
                     "uniform_flatness", "uniform_color_tolerance"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} is a ratio: 0-1")


@dataclass(frozen=True)
class Sample:
    """One analysed frame: its stream time (seconds) and its pixels (H x W x 3 RGB uint8)."""

    time: float
    rgb: np.ndarray


@dataclass
class FrameMeasures:
    brightness: float
    contrast: float
    sharpness: float
    cast_factor: float
    chroma_offset: float
    uniform_area: float


@dataclass
class Diagnosis:
    """The measures and diagnoses of one probe. `evidence[name]` is the JPEG of the sample
    that showed diagnosis `name` (present only for diagnoses found)."""

    measures: dict[str, float] = field(default_factory=dict)
    found: dict[str, bool] = field(default_factory=dict)
    evidence: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) @ LUMA) / np.float32(255.0)


def measure(rgb: np.ndarray, thresholds: QualityThresholds) -> FrameMeasures:
    """All per-frame measures of one analysed frame."""
    y = luma(rgb)
    brightness = float(y.mean())
    histogram = np.bincount(np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8).ravel(),
                            minlength=256)
    cumulative = np.cumsum(histogram) / y.size
    p5 = int(np.searchsorted(cumulative, 0.05))
    p95 = int(np.searchsorted(cumulative, 0.95))
    contrast = (p95 - p5) / 255.0
    variance = float(y.var())
    if variance < 1e-7 or y.shape[0] < 3 or y.shape[1] < 3:
        sharpness = 0.0
    else:
        laplacian = (y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1]
                     - 4 * y[1:-1, 1:-1])
        sharpness = float(laplacian.var()) / variance
    cast_factor, offset = color_cast(rgb[::2, ::2])
    return FrameMeasures(brightness, contrast, sharpness, cast_factor, offset,
                         uniform_area(rgb, y, thresholds))


def color_cast(rgb: np.ndarray) -> tuple[float, float]:
    """(K, D): the equivalent-circle cast factor and the mean chroma offset in a*b* units."""
    c = rgb.reshape(-1, 3).astype(np.float32) / np.float32(255.0)
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = c @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    offset = float(np.hypot(a.mean(), b.mean()))
    spread = float(np.hypot(a.std(), b.std()))
    return offset / max(spread, 1.0), offset


_RGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                        [0.0193, 0.1192, 0.9505]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def uniform_area(rgb: np.ndarray, y: np.ndarray, thresholds: QualityThresholds) -> float:
    """Share of the frame in the largest 4-connected area of flat blocks of one colour."""
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return 0.0
    yb = y[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    flat = yb.std(axis=(1, 3)) < thresholds.uniform_flatness
    colour = (rgb[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK, 3)
              .mean(axis=(1, 3)) / 255.0)
    seen = np.zeros_like(flat)
    best = 0
    tolerance = thresholds.uniform_color_tolerance
    for start in zip(*np.nonzero(flat), strict=True):
        if seen[start]:
            continue
        seed = colour[start]
        stack, size = [start], 0
        seen[start] = True
        while stack:
            r, c = stack.pop()
            size += 1
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if (0 <= nr < rows and 0 <= nc < cols and flat[nr, nc] and not seen[nr, nc]
                        and np.abs(colour[nr, nc] - seed).max() <= tolerance):
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        best = max(best, size)
    return best / (rows * cols)


def motion(a: np.ndarray, b: np.ndarray, delta: float) -> float:
    """Share of pixels whose luma changed by more than `delta` between two frames."""
    if a.shape != b.shape:
        return 1.0  # the picture size changed: certainly not a frozen picture
    return float((np.abs(luma(a) - luma(b)) > delta).mean())


def diagnose(samples: Sequence[Sample], thresholds: QualityThresholds) -> Diagnosis:
    """Measures and diagnoses over the samples (at least one)."""
    out = Diagnosis()
    if not samples:
        out.notes.append("no frame to analyse")
        return out
    per_frame = [measure(s.rgb, thresholds) for s in samples]

    def median(name: str) -> float:
        return float(np.median([getattr(m, name) for m in per_frame]))

    t = thresholds
    m = out.measures
    m["brightness"] = median("brightness")
    m["contrast"] = median("contrast")
    m["sharpness"] = median("sharpness")
    m["cast_factor"] = median("cast_factor")
    m["chroma_offset"] = median("chroma_offset")
    m["uniform_area"] = median("uniform_area")
    m["samples"] = float(len(samples))
    changes = [motion(a.rgb, b.rgb, t.motion_pixel_delta) for a, b in pairwise(samples)]
    span = samples[-1].time - samples[0].time
    if changes:
        m["motion"] = max(changes)

    found = out.found
    found["dark"] = m["brightness"] < t.dark_brightness
    found["overexposed"] = m["brightness"] > t.overexposed_brightness
    exposure_bad = found["dark"] or found["overexposed"]
    found["low_contrast"] = not exposure_bad and m["contrast"] < t.low_contrast_ratio
    detail = not exposure_bad and not found["low_contrast"]
    found["blurred"] = detail and m["sharpness"] < t.blurred_sharpness
    found["color_cast"] = (not exposure_bad and m["cast_factor"] > t.color_cast_factor
                           and m["chroma_offset"] >= t.color_cast_offset)
    found["occluded"] = detail and m["uniform_area"] > t.occluded_area_ratio
    if changes and span >= t.frozen_min_seconds - 1e-6:
        found["frozen"] = detail and m["motion"] < t.frozen_motion_ratio
    else:
        out.notes.append(f"frozen not judged: samples span {span:.1f}s, "
                         f"{t.frozen_min_seconds:g}s needed")

    # the sample that showed each finding best
    def pick(name: str, worst) -> int:
        values = [getattr(x, name) for x in per_frame]
        return int(worst(range(len(values)), key=values.__getitem__))

    chosen = {"dark": pick("brightness", min), "overexposed": pick("brightness", max),
              "low_contrast": pick("contrast", min), "blurred": pick("sharpness", min),
              "color_cast": pick("cast_factor", max), "occluded": pick("uniform_area", max),
              "frozen": len(samples) - 1}
    for name, hit in found.items():
        if hit:
            out.evidence[name] = jpeg(samples[chosen[name]].rgb, t.evidence_width,
                                      t.evidence_quality)
    return out


def jpeg(rgb: np.ndarray, width: int, quality: int) -> bytes:
    """A small JPEG of a frame, at most `width` pixels wide."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))),
                             Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()

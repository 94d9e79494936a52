"""Per-title encoding: pick each rung's bitrate from measured VMAF instead of a fixed ladder.

How (issue 4):
1. Sample: `samples` excerpts of `sample_seconds` each, spread evenly across the video, are
   cut from the source, joined and kept as one lossless intermediate (so the source is
   decoded once, whatever its codec).
2. Per rung: the sample is scaled to the rung (same scaler as the ladder) and encoded once
   per test point with the ladder's own x264 settings (ffmpeg_graphs.encoder_args: preset,
   High profile, rate control, a keyframe every segment; one encoder thread, so encodes
   repeat: `h264_sample_args`), at fractions of the rung's fixed bitrate (its ceiling).
   Each encode gets VMAF (libvmaf, the vmaf_v0.6.1 model built into libvmaf) against the
   sample scaled to the rung size. Every point of a rung is
   encoded and scored in one ffmpeg run each (one decode, split).
3. Rate-quality curve per rung: the Pareto frontier of the measured points (a point that
   costs more bits for no more VMAF is dominated and dropped), VMAF interpolated linearly
   in log bitrate between them. Not the upper convex hull: at low rates x264's curve is
   S-shaped, and a hull chord there would promise quality no real encode reaches. On the
   concave part (where every target sits) a straight line under-estimates VMAF (wasting
   bits), so decisions use a monotone cubic (PCHIP) through the frontier (`smooth`).
   `upper_hull` is kept for reporting.
4. Per rung goal: reach `target_vmaf` (default by height, 95 at 1080p) or the best the
   ceiling allows, and never drop more than `max_vmaf_loss` below what the fixed ceiling
   itself scores; the lowest bitrate meeting the goal is chosen, never above the ceiling.
   With `choose_resolution`, the goal is judged at the top rung's size and a slot may move
   to whichever picture size reaches it with the fewest bits: the ladder's sizes (with
   `in_between`, also one measured in each of its wide gaps: `in_between_sizes`). Curves
   are in the rate asked of x264 (the knob); "fewest bits" here and in steps 5 and 7 means
   the fewest bits produced (`SampleEncodes.bits`, from the encodes measured): on easy
   content x264 produces a fraction of the rate asked, and a different fraction at each
   size.
5. Across rungs (the ladder's hull): a rung must produce at least `min_step` times fewer
   bits than the next larger kept rung, otherwise the larger picture costs (almost) no more
   bits and the smaller rung is dominated: it is dropped. The top rung is always kept, and
   the bottom (the least bandwidth a viewer needs) too, unless it needs as many bits as the
   rung above it, which has the better picture; if the bottom collides with a middle rung,
   that middle rung is dropped instead; if only top and bottom remain and collide, the
   bottom is lowered to produce top/min_step and its VMAF re-predicted.
6. Verify (`verify=True`): the chosen ladder is encoded on the sample and scored, in one
   ffmpeg run. A curve is only as good as its few test points: between two far-apart points
   at the foot of the S-curve, or where x264 overshoots a very low rate, the prediction can
   be several points too high. A rung whose measured quality falls more than
   `max_vmaf_loss + VERIFY_SLACK` below its slot's fixed rung goes back to that fixed rung
   (size and bitrate: measured when the curve was made, so it is safe). So does a rung moved
   to another size that measures under its fixed rung without producing MIN_SAVING fewer
   bits: the fixed rung, measured, is then as cheap and better (a 480p film's 360p slot
   moved to 432p for 0.4 % more bits and 0.3 VMAF less). A rung under it that is now
   larger goes back too. The VMAF stored per rung is the measured one. Step 5 runs again
   after step 7, not here: a slot sent back may cost as many bits as the rung above it
   until step 7 finds it a cheaper size (a still slide's bottom slot did).
7. Refine (`refine_rounds`, with verification): every encode measured so far (test points
   and verification) is added to its size's curve, and each slot is chosen again as in step 4,
   aiming REFINE_AIM above its goal. Two cases gain. A slot that verification sent back to
   its fixed rung gets the next-best picture size (the failed encode has corrected the curve
   that promised too much). A rung that measured well above its goal gets a lower rate: a
   curve from 4 test points is conservative between them (PCHIP never overshoots its data).
   A retry must save at least MIN_SAVING; all retries of a round run in one ffmpeg
   run; one is kept only if it measures at least its goal, otherwise the verified rung stays
   and the miss joins its curve, so the next round may try that slot again a little higher
   (halfway to the next encode that reached the goal, if the curve still promises the
   goal at or under a rate that missed: `_above_misses`).
   Sizes still grow up the ladder whichever retries are kept; then step 5 runs again.
8. Other codec families (`families`): each chosen rung is encoded on the sample in VP9 / AV1
   at ladder.FAMILY_BITRATE_FACTOR's rate (calibrated on fixed-ladder rungs of a few clips)
   and scored; a family that misses the rung's H.264 VMAF by more than half a point, or beats
   it by more than a point, is encoded again (up to twice: a secant search on the curve's
   slope) at the rate expected to match, and the cheapest measured rate keeping H.264's
   quality is its rate for this video (`_families_on`). Stored: each family's rate and
   measured VMAF per rung.

This module decides; the ffmpeg graphs it runs (the sample, its encodes, VMAF scoring) are
built and run by ffmpeg_graphs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from transcoder_svc import ffmpeg_graphs
from transcoder_svc.ladder import MAX_FRAME_RATE, Rung, top_rung
from transcoder_svc.probe import MediaInfo


# Test points as fractions of a rung's ceiling, ~2.7x apart: static content (which
# saturates early) still has a point near where it reaches the target; 4 points keep the
# analysis affordable on 2 cores.
DEFAULT_POINTS = (0.05, 0.15, 0.4, 1.0)
DEFAULT_MIN_STEP = 1.25
DEFAULT_MAX_VMAF_LOSS = 0.5  # half the 1-point budget: sample-vs-whole-video error eats the rest
# How far a verified rung may miss its goal on the sample (encodes wobble by a few tenths):
# it still leaves a quarter point of the 1-point budget for the sample-to-video difference.
VERIFY_SLACK = 0.25
# Ladder gaps (ratio of short sides) wide enough to measure a size in between: Apple's
# 234->360, 540->720 and 720->1080 steps, not its 360->432->540 ones.
IN_BETWEEN_MIN_GAP = 1.3
# Refinement (step 7): rounds of re-choosing each slot from every encode measured so far.
DEFAULT_REFINE_ROUNDS = 2
REFINE_AIM = 0.2  # above the goal: encodes wobble by a few tenths, and a retry must reach the goal
# A rung moved to another size that scores under its slot's fixed rung must produce at least
# 5 % fewer bits than it (verification), and a refinement retry 5 % fewer than the verified
# rung (`SampleEncodes.bits`): a smaller saving does not pay for the quality or the encode.
MIN_SAVING = 0.05
# Other families' rungs (step 8): how far under H.264's measured VMAF a family's rung may
# score (the H.264 guard's half point), and how far over it before its rate is lowered.
FAMILY_VMAF_TOLERANCE = 0.5
FAMILY_VMAF_EXCESS = 1.0
# VMAF per unit of ln(bitrate) assumed where no H.264 curve gives the slope (codec upgrade):
# about 7 points per doubling, typical in the middle of the curves the bench measured.
FAMILY_DEFAULT_SLOPE = 10.0
FAMILY_RETRY_ROUNDS = 2  # encodes after the factor's: each one ffmpeg run for every rung and family
FAMILY_MAX_STEP = 4.0  # one retry moves the rate at most this many times up or down


def default_target_vmaf(rung: Rung) -> float:
    """93-95 at the top (about 'indistinguishable'), lower for the small rungs, which are
    for bad networks and small screens anyway."""
    short = min(rung.width, rung.height)
    if short >= 1080:
        return 95.0
    if short >= 720:
        return 93.0
    if short >= 480:
        return 90.0
    if short >= 360:
        return 85.0
    return 80.0


@dataclass
class RungCurve:
    rung: str
    # Measured (requested bitrate, vmaf), ascending. Curves are kept in the bitrate asked
    # of x264, not the one it produced: that is the knob the ladder sets, and on easy
    # content x264 under- or overshoots a lot (a still frame never fills its budget).
    points: list[tuple[int, float]]
    actual_bps: list[int] = field(default_factory=list)  # what each point really used
    hull: list[tuple[int, float]] = field(default_factory=list)  # Pareto frontier: used for prediction
    # The same encodes upscaled to the top rung's size and scored there ("display VMAF",
    # as a viewer sees a small rung on the big screen): the only scale on which rungs of
    # different sizes can be compared.
    display_points: list[tuple[int, float]] = field(default_factory=list)
    display_hull: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_measured(cls, rung: str, measured: list[tuple[int, int, float, float]]) -> "RungCurve":
        """From `measure_rung`'s (requested, actual, rung VMAF, display VMAF) points."""
        pts, dpts = [(q, v) for q, _, v, _ in measured], [(q, d) for q, _, _, d in measured]
        return cls(rung, pts, [a for _, a, _, _ in measured], pareto_frontier(pts), dpts, pareto_frontier(dpts))


@dataclass
class PerTitleResult:
    rungs: list[Rung]  # kept rungs, bitrates adjusted
    vmaf_by_rung: dict[str, float]  # VMAF at the chosen bitrate, rung size (measured if verified)
    curves: dict[str, RungCurve] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # rung name -> why
    # slot -> why its per-title choice was replaced by the fixed rung (verification, step 6)
    reverted: dict[str, str] = field(default_factory=dict)
    # slot -> how refinement (step 7) lowered its rate, with what it measured
    refined: dict[str, str] = field(default_factory=dict)
    # input rung name -> output rung name (differs when the rung moved to another size)
    slots: dict[str, str] = field(default_factory=dict)
    display_vmaf_by_rung: dict[str, float] = field(default_factory=dict)
    sample_seconds: float = 0.0
    source_seconds: float = 0.0
    analysis_seconds: float = 0.0  # wall time of the whole analysis
    families_seconds: float = 0.0  # of which the other families' rates (0: H.264 only)
    # rung name -> family -> every (requested rate, bits produced, VMAF) measured for it on
    # the sample, the first at ladder.FAMILY_BITRATE_FACTOR's rate (step 8)
    family_trials: dict[str, dict[str, list[tuple[int, int, float]]]] = field(default_factory=dict)

    @property
    def seconds_per_source_minute(self) -> float:
        # The sample has a fixed length, so this falls as videos get longer.
        return self.analysis_seconds / max(self.source_seconds / 60, 1e-9)


# ---------------------------------------------------------------------------------------
# pure curve logic (unit-tested on synthetic curves)


def pareto_frontier(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Points in ascending bitrate, each with more VMAF than every cheaper one (of two
    encodes at one rate, the better: x264 is not quite repeatable)."""
    out: list[tuple[int, float]] = []
    for p in sorted(set(points), key=lambda p: (p[0], -p[1])):
        if not out or (p[1] > out[-1][1] and p[0] > out[-1][0]):
            out.append(p)
    return out


def upper_hull(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Upper convex hull of (log bitrate, vmaf), ascending bitrate; a point that does not
    raise quality over a cheaper one is dropped too (quality must rise with bits)."""
    pts = sorted(set(points))
    mono: list[tuple[int, float]] = []
    for p in pts:
        if not mono or p[1] > mono[-1][1]:
            mono.append(p)
    hull: list[tuple[int, float]] = []
    for p in mono:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()  # hull[-1] lies on or under the chord: dominated
        hull.append(p)
    return hull


def _cross(a, b, c) -> float:
    ax, bx, cx = math.log(a[0]), math.log(b[0]), math.log(c[0])
    return (bx - ax) * (c[1] - a[1]) - (b[1] - a[1]) * (cx - ax)


def smooth(frontier: list[tuple[int, float]], per_segment: int = 32) -> list[tuple[int, float]]:
    """The frontier densified with a monotone cubic (PCHIP) in log bitrate: it follows the
    curve's bend between test points, where straight lines under-predict on its concave top
    (wasting bits) and over-predict on its convex foot, and it never overshoots the data.
    Without scipy the frontier itself is used (linear, still safe where targets sit)."""
    if len(frontier) < 3:
        return list(frontier)
    try:
        from scipy.interpolate import PchipInterpolator
    except ImportError:
        return list(frontier)
    xs = [math.log(r) for r, _ in frontier]
    f = PchipInterpolator(xs, [v for _, v in frontier])
    out = [frontier[0]]
    for x0, x1 in zip(xs, xs[1:]):
        for k in range(1, per_segment + 1):
            x = x0 + (x1 - x0) * k / per_segment
            out.append((math.exp(x), float(f(x))))
    return out


def vmaf_at(hull: list[tuple[int, float]], bitrate: float) -> float:
    """VMAF predicted at `bitrate`, linear in log bitrate along the hull (flat outside)."""
    if bitrate <= hull[0][0]:
        return hull[0][1]
    for (r0, v0), (r1, v1) in zip(hull, hull[1:]):
        if bitrate <= r1:
            t = (math.log(bitrate) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return v0 + t * (v1 - v0)
    return hull[-1][1]


def rate_for(hull: list[tuple[int, float]], vmaf: float) -> float:
    """Lowest bitrate whose predicted VMAF reaches `vmaf` (the top of the hull if never)."""
    if vmaf <= hull[0][1]:
        return float(hull[0][0])
    for (r0, v0), (r1, v1) in zip(hull, hull[1:]):
        if vmaf <= v1:
            t = (vmaf - v0) / (v1 - v0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return float(hull[-1][0])


class SampleEncodes:
    """Every encode of the sample so far, by picture size (test points, verification,
    refinement): rate asked, bits produced and, when scored, VMAF at the size and display
    VMAF. The curves stay in the rate asked (the knob the encoder is given); `quality` gives
    the scored points a size's curve is made from.

    `bits(size, rate)`: the bits that rate produces. Decisions that compare rates across
    sizes or rungs (the size needing the fewest bits for a goal, a rung dominated by the one
    above, a retry worth its encode) compare these: a viewer's bandwidth pays for the bits
    produced, and on easy content those are a fraction of the rate asked that differs by
    size (a still slide asked 145 kbps at 234p produces 45; asked 7.8 Mbps at 1080p, 150).
    With nothing measured for a size it is the rate asked."""

    def __init__(self) -> None:
        self._bits: dict[tuple[int, int], dict[int, int]] = {}
        self._quality: dict[tuple[int, int], list[tuple[int, float, float]]] = {}

    def add(self, size: tuple[int, int], requested: int, produced: int, vmaf: float | None = None,
            display_vmaf: float | None = None) -> None:
        size = tuple(size)
        self._bits.setdefault(size, {})[int(requested)] = max(1, int(produced))
        if vmaf is not None:
            self._quality.setdefault(size, []).append(
                (int(requested), vmaf, vmaf if display_vmaf is None else display_vmaf))

    def quality(self) -> dict[tuple[int, int], list[tuple[int, float, float]]]:
        """(rate asked, VMAF at the size, display VMAF) of every scored encode, by size."""
        return {size: list(points) for size, points in self._quality.items()}

    def bits(self, size: tuple[int, int], requested: float) -> float:
        points = sorted(self._bits.get(tuple(size), {}).items())
        if not points:
            return float(requested)
        rates = np.array([r for r, _ in points], dtype=float)
        # asking more never gives fewer bits (x264's noise aside)
        produced = np.maximum.accumulate(np.array([a for _, a in points], dtype=float))
        if requested <= rates[0] or requested >= rates[-1]:
            edge = 0 if requested <= rates[0] else -1  # outside what was measured: in proportion
            return float(produced[edge] * requested / rates[edge])
        return float(np.exp(np.interp(math.log(requested), np.log(rates), np.log(produced))))


def _slope(hull: list[tuple[int, float]], bitrate: float) -> float:
    """dVMAF / d ln(bitrate) of a curve around `bitrate` (x1.25 each way, within the curve);
    FAMILY_DEFAULT_SLOPE where the curve gives none."""
    if not hull:
        return FAMILY_DEFAULT_SLOPE
    lo, hi = max(bitrate / 1.25, hull[0][0]), min(bitrate * 1.25, hull[-1][0])
    if hi <= lo * 1.01:
        return FAMILY_DEFAULT_SLOPE
    return (vmaf_at(hull, hi) - vmaf_at(hull, lo)) / math.log(hi / lo)


def slot_goal(fixed_q: float, target: float, max_loss: float | None) -> float:
    """The quality a slot must keep: its target, or what its fixed rung scores if that is
    less; with the guard, never more than `max_loss` under the fixed rung."""
    goal = min(target, fixed_q)
    return goal if max_loss is None else max(goal, fixed_q - max_loss)


def choose_bitrate(hull, ceiling: int, target: float, max_loss: float | None) -> int:
    goal = slot_goal(vmaf_at(hull, ceiling), target, max_loss)
    return int(min(ceiling, math.ceil(rate_for(hull, goal) / 1000) * 1000))


def choose_size(ceiling: int, goal: float, display_hulls: dict[tuple[int, int], list[tuple[int, float]]],
                default: tuple[int, int], encodes: SampleEncodes | None = None) -> tuple[tuple[int, int], int]:
    """The picture size reaching display VMAF `goal` with the fewest bits, at most `ceiling`:
    the convex hull across resolutions (Netflix per-title). The curves are in the rate asked
    of the encoder; `encodes.bits(size, rate)` says what that rate produces, and the
    fewest bits produced wins. A curve is never extrapolated below its cheapest measured
    point. Falls back to `default` at its own best rate. Returns (size, rate to ask)."""
    encodes = encodes or SampleEncodes()
    best: tuple[float, int, tuple[int, int], int] | None = None
    for size, hull in display_hulls.items():
        if not hull:
            continue
        rate = rate_for(hull, goal)
        if rate > ceiling or vmaf_at(hull, rate) < goal - 1e-9:
            continue
        rate = math.ceil(rate / 1000) * 1000
        # ties go to the larger picture (more detail for the same bits)
        option = (round(encodes.bits(size, rate)), -size[0] * size[1], size, rate)
        if best is None or option[:2] < best[:2]:
            best = option
    if best is None:
        return default, int(min(ceiling, math.ceil(rate_for(display_hulls[default], goal) / 1000) * 1000))
    return best[2], int(min(ceiling, best[3]))


def _saves_enough(encodes: SampleEncodes, current: tuple[tuple[int, int], int], candidate: tuple[tuple[int, int], int]
                  ) -> bool:
    """Whether (size, rate) `candidate` produces at least MIN_SAVING fewer bits than `current`."""
    return encodes.bits(*candidate) <= encodes.bits(*current) * (1 - MIN_SAVING)


def in_between_sizes(ordered: list[Rung], min_gap: float = IN_BETWEEN_MIN_GAP) -> list[Rung]:
    """Candidate picture sizes for the cross-resolution hull, one in each gap of the ladder
    (`ordered`: ascending by size) wider than `min_gap` in short side: the geometric mean of
    its two sizes (short side a multiple of 8, aspect of the larger size, even dimensions).
    Its ceiling is the geometric mean of the two sizes' highest bitrates. A fixed ladder's
    sizes are spaced for every title at once; one title's best picture for a slot's bits
    often falls in a gap (Netflix's per-title hull measures many sizes for this reason)."""
    sizes = list(_highest_by_size(ordered).values())
    out = []
    for lo, hi in zip(sizes, sizes[1:]):
        short_lo, short_hi = min(lo.width, lo.height), min(hi.width, hi.height)
        if short_hi < short_lo * min_gap:
            continue
        short = int(round(math.sqrt(short_lo * short_hi) / 8)) * 8
        scale = short / short_hi
        width, height = (2 * int(round(d * scale / 2)) for d in (hi.width, hi.height))
        ceiling = int(math.sqrt(lo.video_bitrate_bps * hi.video_bitrate_bps)) // 1000 * 1000
        out.append(dataclasses.replace(hi, name=f"{min(width, height)}p", width=width, height=height,
                                       video_bitrate_bps=ceiling))
    return out


def _highest_by_size(rungs: list[Rung]) -> dict[tuple[int, int], Rung]:
    """Each picture size's rung with the highest bitrate (a ladder may have several rungs of
    one size, e.g. Apple's two 720p ones), in the order the sizes first appear in `rungs`."""
    tops: dict[tuple[int, int], Rung] = {}
    for r in rungs:
        key = (r.width, r.height)
        if key not in tops or r.video_bitrate_bps > tops[key].video_bitrate_bps:
            tops[key] = r
    return tops


def ladder_hull(chosen: list[tuple[Rung, int]], min_step: float, encodes: SampleEncodes | None = None
                ) -> tuple[list[tuple[Rung, int]], dict[str, str]]:
    """Cross-rung selection (see module doc, step 5). `chosen` is ascending by size; rungs
    are compared on `encodes.bits(size, rate)`, the bits their rate produces."""
    encodes = encodes or SampleEncodes()

    def produced(item: tuple[Rung, int]) -> float:
        return encodes.bits((item[0].width, item[0].height), item[1])

    kept = list(chosen)
    dropped: dict[str, str] = {}
    i = len(kept) - 2  # walk down from the rung under the top
    while i >= 0 and len(kept) > 2:
        lower, upper = kept[i], kept[i + 1]
        if produced(lower) * min_step > produced(upper):
            # The bottom is kept as the least bandwidth a viewer needs, unless the rung above
            # needs no more bits (a still picture's fixed bottom rung can cost more than a
            # per-title rung above it, which looks better): then it serves no one.
            if i > 0 or produced(lower) >= produced(upper):
                victim = i
            elif i + 1 < len(kept) - 1:
                victim = i + 1  # keep the bottom rung, drop the middle one above it
            else:
                break
            other = upper[0] if victim == i else lower[0]
            r = kept.pop(victim)[0]
            dropped[r.name] = f"dominated by {other.name} (bitrates within {min_step}x)"
            i = min(i, len(kept) - 2)
            continue
        i -= 1
    if len(kept) >= 2 and produced(kept[0]) * min_step > produced(kept[1]):
        # The bottom's rate lowered in proportion, to produce min_step times fewer bits.
        (bottom, rate), want = kept[0], produced(kept[1]) / min_step
        kept[0] = (bottom, max(1000, int(rate * want / produced(kept[0])) // 1000 * 1000))
    return kept, dropped


# ---------------------------------------------------------------------------------------
# measurement


@contextlib.contextmanager
def _scratch(workdir: str | None, prefix: str):
    """`workdir` (made if missing: the worker passes a not-yet-existing subfolder), or a
    temporary folder removed afterwards."""
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        yield workdir
        return
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sample_windows(duration_s: float, samples: int, sample_seconds: float) -> list[tuple[float, float]]:
    """(start, length) excerpts spread evenly; the whole video if it is short."""
    if duration_s <= samples * sample_seconds * 1.2:
        return [(0.0, duration_s)]
    span = duration_s / samples
    return [(i * span + (span - sample_seconds) / 2, sample_seconds) for i in range(samples)]


def sample_fps(info: MediaInfo) -> float:
    """The sample's frame rate (and the ladder's): the source's, at most ladder.MAX_FRAME_RATE."""
    return min(info.frame_rate or 30.0, MAX_FRAME_RATE)


def make_sample(src: str, info: MediaInfo, samples: int, sample_seconds: float, out: str,
                timeout_s: float) -> float:
    """Step 1: `samples` excerpts of `sample_seconds` (`sample_windows`) joined into `out`,
    one lossless intermediate; returns its length in seconds, as measured."""
    windows = sample_windows(info.duration_s, samples, sample_seconds)
    ffmpeg_graphs.encode_excerpts(src, info, windows, sample_fps(info), out, timeout_s)
    return _sample_duration(out) or sum(length for _, length in windows)


def h264_sample_args(rung: Rung, bitrate: int, fps: float) -> list[str]:
    """The ladder's own H.264 options for `rung` at `bitrate` (ffmpeg_graphs.encoder_args: preset,
    profile, level, rate control, a keyframe on every segment boundary), for an encode of
    the sample or a bench ladder. One encoder thread: x264's VBV with frame threads depends
    on thread timing (the same encode gives different files), while single-threaded it is
    repeatable, so a curve's points and their re-encodes agree. The analysis runs several
    encoders at once, which keeps the cores busy (same wall time on 2 cores)."""
    one = dataclasses.replace(rung, video_bitrate_bps=bitrate, crf=0.0)
    return [*ffmpeg_graphs.encoder_args("h264", [one], fps), "-threads", "1", "-an", "-f", "h264"]


def measure_rung(sample: str, duration_s: float, rung: Rung, bitrates: list[int], workdir: str,
                 timeout_s: float = 1800, subsample: int = 1, display: tuple[int, int] | None = None, *,
                 fps: float) -> list[tuple[int, int, float, float]]:
    """(requested bitrate, actual bitrate, VMAF at rung size, VMAF at `display` size) for
    each test bitrate (display VMAF = rung VMAF when no display size or the same size)."""
    measured = measure_ladder(sample, duration_s, [(rung, b) for b in bitrates], workdir, timeout_s, subsample,
                              display, tag="curve", fps=fps)
    return sorted((b, actual, q, shown) for b, (actual, q, shown) in zip(bitrates, measured))


def per_title_ladder(src: str, info: MediaInfo, rungs: list[Rung], *,
                     samples: int = 3, sample_seconds: float = 2.0,
                     points: tuple[float, ...] = DEFAULT_POINTS,
                     target_vmaf=default_target_vmaf,
                     max_vmaf_loss: float | None = DEFAULT_MAX_VMAF_LOSS,
                     min_step: float = DEFAULT_MIN_STEP,
                     vmaf_subsample: int = 2,
                     choose_resolution: bool = True, in_between: bool = True, verify: bool = True,
                     refine_rounds: int = DEFAULT_REFINE_ROUNDS, families=("h264",), workdir: str | None = None,
                     timeout_s: float = 3600) -> PerTitleResult:
    """Rungs with per-title bitrates (never above the given rungs' bitrates: those are the
    ceilings) and the VMAF predicted for each. `target_vmaf`: a number or rung -> number;
    `max_vmaf_loss=None` drops the 'no worse than the fixed ceiling' guard (pure target).
    `choose_resolution`: each rung (a bitrate slot of the fixed ladder) may move to another
    of the ladder's picture sizes when that size reaches the slot's quality, measured at the
    top rung's size, with fewer bits (the renamed rung is in `slots`); False keeps every
    rung's size and only lowers bitrates, judged on VMAF at the rung's own size.
    `vmaf_subsample`: score every n-th frame (VMAF is most of the cost; 2 halves it and moves
    the mean by well under a point on 6 s samples). `in_between` (with `choose_resolution`):
    also measure the sizes `in_between_sizes` puts into the ladder's wide gaps, as candidates
    a slot may move to; each is measured up to the next ladder size's ceiling. On by default
    since the 7-clip bench of 2026-11-29 (BD-rate -19.4 -> -20.7 %, BENCHMARKS.md): it costs
    1.38x the analysis time (bench/pertitle_cost.py); False for a cheaper analysis.
    `verify`: step 6 of the module doc; `refine_rounds`: step 7 (0 turns it off).
    `families`: the codec families the video will be encoded in; step 8 chooses and measures
    each other family's rate for every rung (`Rung.family_bitrate_bps`, `Rung.family_vmaf`)."""
    if not rungs:
        return PerTitleResult(rungs=[], vmaf_by_rung={})
    rungs = [dataclasses.replace(r, crf=0.0) for r in rungs]  # it chooses average bitrates, under these
    started = time.monotonic()
    target_fn = target_vmaf if callable(target_vmaf) else (lambda _r, t=float(target_vmaf): t)
    with _scratch(workdir, "pertitle-") as work:
        sample_path = os.path.join(work, "sample.mp4")
        sample_len = make_sample(src, info, samples, sample_seconds, sample_path, timeout_s)
        ordered = sorted(rungs, key=lambda r: (r.width * r.height, r.video_bitrate_bps))
        sample = _Sample(sample_path, sample_len, sample_fps(info), work, timeout_s, vmaf_subsample,
                         (ordered[-1].width, ordered[-1].height) if choose_resolution else None)
        curves, by_size, template, decide = _measure_sizes(sample, ordered, points, choose_resolution and in_between)
        chosen, slot_of, goals = _choose_slots(ordered, decide, target_fn, max_vmaf_loss, choose_resolution,
                                               template)
        kept, dropped = _hull_by_slot(chosen, min_step, slot_of, decide.encodes)
        vmafs, shown = {}, {}
        for r, b in kept:
            vmafs[r.name], shown[r.name] = decide.predict(r, b)
        reverted: dict[str, str] = {}
        refined: dict[str, str] = {}
        if verify and max_vmaf_loss is not None:
            kept, reverted, refined, more_dropped = _verify_and_refine(
                sample, kept, ordered, slot_of, goals, template, decide, max_vmaf_loss, min_step, refine_rounds,
                vmafs, shown)
            dropped.update(more_dropped)
        out_rungs = [_with_bitrate(r, b, vmafs[r.name]) for r, b in kept]
        families_started = time.monotonic()
        slopes = {r.name: _slope(decide.rung[(r.width, r.height)], r.video_bitrate_bps) for r in out_rungs}
        out_rungs, family_trials = _families_on(sample_path, sample_len, out_rungs, families, sample.fps, work,
                                                timeout_s, vmaf_subsample, slopes=slopes)
        families_seconds = time.monotonic() - families_started
        slots = {slot_of[id(r)]: r.name for r, _ in kept}
        return PerTitleResult(rungs=out_rungs, vmaf_by_rung={r.name: vmafs[r.name] for r, _ in kept},
                              curves=curves, dropped=dropped, reverted=reverted, refined=refined, slots=slots,
                              display_vmaf_by_rung={r.name: shown[r.name] for r, _ in kept},
                              sample_seconds=sample_len, source_seconds=info.duration_s,
                              analysis_seconds=time.monotonic() - started, families_seconds=families_seconds,
                              family_trials=family_trials)


@dataclass
class _Sample:
    """The analysis's sample (`make_sample`) and how its encodes are measured."""
    path: str
    seconds: float
    fps: float
    workdir: str
    timeout_s: float
    subsample: int  # VMAF scores every n-th frame
    display: tuple[int, int] | None  # where display VMAF is scored; None: slots keep their size

    def curve_points(self, rung: Rung, bitrates: list[int]) -> list[tuple[int, int, float, float]]:
        return measure_rung(self.path, self.seconds, rung, bitrates, self.workdir, self.timeout_s, self.subsample,
                            self.display, fps=self.fps)


def _measure_sizes(sample: _Sample, ordered: list[Rung], points: tuple[float, ...], in_between: bool):
    """Step 2: a curve per picture size of the ladder (`ordered`, ascending), and with
    `in_between` per size `in_between_sizes` adds. Returns (curve by rung name, curve by
    size, the rung each size is named after, the smoothed curves decisions use)."""
    curves: dict[str, RungCurve] = {}
    measured: dict[tuple[int, int], list[tuple[int, int, float, float]]] = {}
    highest = _highest_by_size(ordered)
    for rung in ordered:
        key = (rung.width, rung.height)
        if key not in measured:
            # Rungs of the same size (e.g. Apple's two 720p rungs) share one curve,
            # measured up to the highest of their ceilings.
            measured[key] = sample.curve_points(rung, _test_bitrates(highest[key].video_bitrate_bps, points))
        curves[rung.name] = RungCurve.from_measured(rung.name, measured[key])
    by_size = {(r.width, r.height): curves[r.name] for r in ordered}
    template = {}
    for r in ordered:
        template.setdefault((r.width, r.height), r)
    if in_between:
        # Candidate sizes between the ladder's own: more pictures for the hull to pick from.
        for extra in in_between_sizes(ordered):
            key = (extra.width, extra.height)
            # Measured up to the next ladder size's ceiling: it competes for that size's slots.
            upper = min((r for r in highest.values() if r.width * r.height > extra.width * extra.height),
                        key=lambda r: r.width * r.height)
            measured[key] = sample.curve_points(extra, _test_bitrates(upper.video_bitrate_bps, points))
            by_size[key] = curves[extra.name] = RungCurve.from_measured(extra.name, measured[key])
            template[key] = extra
    # Decisions use the smoothed curves; the reported hulls stay the measured points.
    decide = _Curves(rung={k: smooth(c.hull) for k, c in by_size.items()},
                     display={k: smooth(c.display_hull) for k, c in by_size.items()},
                     on_display=sample.display is not None)
    for key, pts in measured.items():
        for asked, produced, q_rung, q_shown in pts:
            decide.encodes.add(key, asked, produced, q_rung, q_shown)
    return curves, by_size, template, decide


def _choose_slots(ordered: list[Rung], decide: _Curves, target_fn, max_vmaf_loss: float | None,
                  choose_resolution: bool, template: dict[tuple[int, int], Rung]):
    """Step 4: each slot's (rung, rate), ascending; which slot each chosen rung fills (by
    id) and each slot's goal, on the scale it is judged on."""
    chosen: list[tuple[Rung, int]] = []
    slot_of: dict[int, str] = {}
    goals: dict[str, float] = {}  # slot -> the quality it must keep, on the judged scale
    floor_area = 0
    for rung in ordered:
        key = (rung.width, rung.height)
        goals[rung.name] = slot_goal(decide.judged(rung, rung.video_bitrate_bps), target_fn(rung), max_vmaf_loss)
        if not choose_resolution:
            rate = choose_bitrate(decide.rung[key], rung.video_bitrate_bps, target_fn(rung), max_vmaf_loss)
            chosen.append((rung, rate))
            slot_of[id(rung)] = rung.name
            continue
        goal = goals[rung.name]
        # Picture size never shrinks as the bitrate grows up the ladder.
        hulls = {k: c for k, c in decide.display.items() if k[0] * k[1] >= floor_area}
        size, rate = choose_size(rung.video_bitrate_bps, goal, hulls, key if key in hulls else max(hulls),
                                 decide.encodes)
        floor_area = size[0] * size[1]
        # A slot that keeps its size keeps its name; a moved one is named after its new
        # size and rate (unique: the ladder's own names have no rate suffix).
        new = rung if size == key else dataclasses.replace(
            template[size], name=f"{template[size].name}_{rate // 1000}k")
        chosen.append((new, rate))
        slot_of[id(new)] = rung.name
    return chosen, slot_of, goals


def _verify_and_refine(sample: _Sample, kept: list[tuple[Rung, int]], ordered: list[Rung], slot_of: dict[int, str],
                       goals: dict[str, float], template: dict[tuple[int, int], Rung], decide: _Curves,
                       max_vmaf_loss: float, min_step: float, refine_rounds: int, vmafs: dict[str, float],
                       shown: dict[str, float]):
    """Steps 6 and 7, then step 5 again: returns (ladder, reverted by slot, refined by slot,
    dropped by slot); `vmafs` / `shown` end up holding each kept rung's measured VMAF."""
    measured_ladder = measure_ladder(sample.path, sample.seconds, kept, sample.workdir, sample.timeout_s,
                                     sample.subsample, sample.display, fps=sample.fps)
    for (r, b), (produced, q_rung, q_shown) in zip(kept, measured_ladder):
        decide.encodes.add((r.width, r.height), b, produced, q_rung, q_shown)
    kept, reverted = _verify(kept, [(q_rung, q_shown) for _, q_rung, q_shown in measured_ladder], ordered,
                             slot_of, decide, max_vmaf_loss, vmafs, shown)
    fixed_by_slot, tried = {r.name: r for r in ordered}, set()
    refined: dict[str, str] = {}
    for _ in range(refine_rounds):
        kept, notes, encoded = _refine_round(sample.path, sample.seconds, kept, goals, fixed_by_slot, template,
                                             slot_of, decide.encodes, tried, decide.on_display, vmafs, shown,
                                             sample.workdir, sample.timeout_s, sample.subsample, sample.display,
                                             sample.fps)
        refined.update(notes)
        if not encoded:
            break  # nothing left worth an encode (a retry that missed corrected its curve: next round)
    dropped: dict[str, str] = {}
    if reverted or refined:
        # Step 5 again once refinement has settled the slots, not before: a slot sent
        # back to its fixed rung may cost as much as the rung above (so step 5 drops
        # it) until refinement finds it a cheaper size.
        kept, dropped = _hull_repredicted(kept, min_step, slot_of, decide, vmafs, shown)
    return kept, reverted, refined, dropped


def _test_bitrates(ceiling: int, points: tuple[float, ...]) -> list[int]:
    """A size's test bitrates: `points` fractions of its ceiling (at least 20 kbps), ascending."""
    return sorted({max(20_000, int(ceiling * f)) for f in points})


@dataclass
class _Curves:
    """The smoothed curves decisions are made on, by picture size: VMAF at the size itself
    and display VMAF (at the top rung's size); `on_display`: which of the two slots are
    judged on (display, when slots may change size)."""
    rung: dict[tuple[int, int], list[tuple[int, float]]]
    display: dict[tuple[int, int], list[tuple[int, float]]]
    on_display: bool
    encodes: SampleEncodes = field(default_factory=SampleEncodes)  # every encode of the sample, by size

    def predict(self, rung: Rung, bitrate: int) -> tuple[float, float]:
        """(VMAF at rung size, display VMAF) predicted for `rung` at `bitrate`."""
        key = (rung.width, rung.height)
        return round(vmaf_at(self.rung[key], bitrate), 2), round(vmaf_at(self.display[key], bitrate), 2)

    def judged(self, rung: Rung, bitrate: int) -> float:
        """The predicted VMAF on the scale slots are judged on."""
        return vmaf_at((self.display if self.on_display else self.rung)[(rung.width, rung.height)], bitrate)


def _hull_by_slot(ladder: list[tuple[Rung, int]], min_step: float, slot_of: dict[int, str],
                  encodes: SampleEncodes | None = None) -> tuple[list[tuple[Rung, int]], dict[str, str]]:
    """`ladder_hull`, with the dropped rungs named by their slot."""
    kept, dropped = ladder_hull(ladder, min_step, encodes)
    return kept, {slot_of[id(r)]: why for r, _ in ladder for n, why in dropped.items() if r.name == n}


def _verify(kept: list[tuple[Rung, int]], measured: list[tuple[float, float]],
            fixed_rungs: list[Rung], slot_of: dict[int, str], curves: _Curves, max_loss: float,
            vmafs: dict[str, float], shown: dict[str, float]):
    """Step 6 of the module doc, the decision part: `measured` is (VMAF at rung size,
    display VMAF) of each kept rung as encoded on the sample (`measure_ladder`). Updates
    `vmafs` / `shown` (by rung name) with what was measured; returns (ladder, reverted by
    slot). The ladder's hull (step 5) is the caller's, after refinement."""
    fixed_by_slot = {r.name: r for r in fixed_rungs}

    def fixed_rung(slot: str) -> tuple[Rung, int]:
        r = fixed_by_slot[slot]
        slot_of[id(r)] = slot
        vmafs[r.name], shown[r.name] = curves.predict(r, r.video_bitrate_bps)
        return r, r.video_bitrate_bps

    reverted: dict[str, str] = {}
    checked = []
    for (r, b), (q_rung, q_shown) in zip(kept, measured, strict=True):
        slot = slot_of[id(r)]
        f = fixed_by_slot[slot]
        fixed_q = curves.judged(f, f.video_bitrate_bps)
        floor = fixed_q - max_loss - VERIFY_SLACK
        q = q_shown if curves.on_display else q_rung
        own, here = (f.width, f.height), (r.width, r.height)
        why = None
        if q < floor and (r is not f or b != f.video_bitrate_bps):  # (the fixed rung itself stays)
            why = f"under {floor:.2f} (the fixed rung less {max_loss + VERIFY_SLACK:g})"
        elif here != own and q < fixed_q and not _saves_enough(curves.encodes, (own, f.video_bitrate_bps),
                                                                (here, b)):
            why = f"under the fixed rung's {fixed_q:.2f} for less than {MIN_SAVING:.0%} fewer bits"
        if why:
            reverted[slot] = f"{r.name} at {b // 1000} kbps measured {q:.2f}, {why}: back to {f.name}"
            checked.append(fixed_rung(slot))
        else:
            vmafs[r.name], shown[r.name] = round(q_rung, 2), round(q_shown, 2)
            checked.append((r, b))
    # A reverted rung may now be smaller than a moved rung under it: that one goes back too.
    i = len(checked) - 2
    while i >= 0:
        lo, hi = checked[i][0], checked[i + 1][0]
        if lo.width * lo.height > hi.width * hi.height and lo is not fixed_by_slot[slot_of[id(lo)]]:
            slot = slot_of[id(lo)]
            reverted[slot] = f"{lo.name} is larger than the rung above it once that went back: back to {slot}"
            checked[i] = fixed_rung(slot)
            i = len(checked) - 2
            continue
        i -= 1
    return checked, reverted


def _hull_repredicted(ladder: list[tuple[Rung, int]], min_step: float, slot_of: dict[int, str],
                      curves: _Curves, vmafs: dict[str, float], shown: dict[str, float]
                      ) -> tuple[list[tuple[Rung, int]], dict[str, str]]:
    """`_hull_by_slot` on a ladder whose VMAFs were measured: when step 5 lowers the bottom
    rung's rate, that rung's VMAF is re-predicted for the new rate (in `vmafs` / `shown`)."""
    out, dropped = _hull_by_slot(ladder, min_step, slot_of, curves.encodes)
    rate_before = {id(r): b for r, b in ladder}
    for r, b in out:
        if b != rate_before[id(r)]:
            vmafs[r.name], shown[r.name] = curves.predict(r, b)
    return out, dropped


def _refine_round(sample: str, duration_s: float, kept: list[tuple[Rung, int]], goals: dict[str, float],
                  fixed_by_slot: dict[str, Rung], template: dict[tuple[int, int], Rung],
                  slot_of: dict[int, str], encodes: SampleEncodes, tried: set, on_display: bool,
                  vmafs: dict[str, float], shown: dict[str, float], workdir: str, timeout_s: float, subsample: int,
                  display: tuple[int, int] | None, fps: float
                  ) -> tuple[list[tuple[Rung, int]], dict[str, str], int]:
    """One round of step 7. `encodes`: every encode of the sample so far (its curves and
    the bits the savings are judged on; grows with this round's encodes); `tried`: (slot,
    size, rate) already encoded for a slot; `vmafs`/`shown` hold each kept rung's measured
    VMAF and are updated for the retries kept. Returns the ladder, a note per slot that got
    cheaper and how many retries were encoded."""
    def judged(q_rung: float, q_shown: float) -> float:
        return q_shown if on_display else q_rung

    def area(size: tuple[int, int]) -> int:
        return size[0] * size[1]

    scored = encodes.quality()
    curves = {size: smooth(pareto_frontier([(q, judged(v, d)) for q, v, d in pts])) for size, pts in scored.items()}
    tries: list[tuple[int, Rung, int]] = []  # (index in kept, rung, rate)
    floor = 0  # sizes never shrink up the ladder, whichever of this round's retries are kept
    for i, (r, b) in enumerate(kept):
        slot, here = slot_of[id(r)], (r.width, r.height)
        f = fixed_by_slot[slot]
        own = (f.width, f.height)
        roof = area((kept[i + 1][0].width, kept[i + 1][0].height)) if i + 1 < len(kept) else math.inf
        if on_display:
            allowed = {k: c for k, c in curves.items() if floor <= area(k) <= roof and k in template}
        else:
            allowed = {own: curves[own]} if own in curves else {}
        floor = max(floor, area(here))
        if not allowed:
            continue
        size, rate = choose_size(f.video_bitrate_bps, goals[slot] + REFINE_AIM, allowed,
                                 here if here in allowed else max(allowed, key=area), encodes)
        rate = _above_misses([(a, judged(v, d)) for a, v, d in scored[size]], rate, goals[slot])
        if rate is None or not _saves_enough(encodes, (here, b), (size, rate)) or (slot, size, rate) in tried:
            continue
        tried.add((slot, size, rate))
        # Named as in the selection: a slot at its own size keeps its name, a moved one is
        # named after its size and rate.
        new = f if size == own else dataclasses.replace(template[size], name=f"{template[size].name}_{rate // 1000}k")
        tries.append((i, new, rate))
        floor = max(floor, area(size))
    if not tries:
        return kept, {}, 0
    measured = measure_ladder(sample, duration_s, [(r, rate) for _, r, rate in tries], workdir, timeout_s,
                              subsample, display, tag="refine", fps=fps)
    out, notes = list(kept), {}
    for (i, new, rate), (produced, q_rung, q_shown) in zip(tries, measured):
        encodes.add((new.width, new.height), rate, produced, q_rung, q_shown)
        r, b = kept[i]
        slot = slot_of[id(r)]
        if judged(q_rung, q_shown) < goals[slot]:
            continue  # missed: the verified rung stays (its point joins `encodes` for a later round)
        slot_of[id(new)] = slot
        vmafs[new.name], shown[new.name] = round(q_rung, 2), round(q_shown, 2)
        notes[slot] = (f"{r.name} at {b // 1000} kbps -> {new.name} at {rate // 1000} kbps, measured "
                       f"{judged(q_rung, q_shown):.2f} (goal {goals[slot]:.2f})")
        out[i] = (new, rate)
    return out, notes, len(tries)


def _above_misses(points: list[tuple[int, float]], rate: int, goal: float) -> int | None:
    """The rate for a retry at one size, `points` its encodes so far (rate asked, VMAF on the
    judged scale). A rate no higher than one that measured under `goal` would miss again, yet
    the curve can still promise it: the frontier drops a miss that scored less than a cheaper
    encode (on a still picture x264 gives about the same at 38 and 40 kbps). Then the retry
    goes halfway (in log rate) between the highest miss and the cheapest encode above it that
    reached the goal; None if none did."""
    highest_miss = max((a for a, q in points if q < goal), default=None)
    if highest_miss is None or rate > highest_miss:
        return rate
    reached = [a for a, q in points if q >= goal and a > highest_miss]
    if not reached:
        return None
    return int(math.ceil(math.sqrt(highest_miss * min(reached)) / 1000) * 1000)


def measure_ladder(sample: str, duration_s: float, ladder: list[tuple[Rung, int]], workdir: str,
                   timeout_s: float = 1800, subsample: int = 1, display: tuple[int, int] | None = None,
                   tag: str = "verify", *, fps: float) -> list[tuple[int, float, float]]:
    """(actual bitrate, VMAF at rung size, VMAF at `display` size) of each (rung, bitrate),
    all encoded in one ffmpeg run (`encode_sample`) with `h264_sample_args`; `fps`: the
    sample's frame rate (`sample_fps`). `tag` prefixes the files."""
    outs = [os.path.join(workdir, f"{tag}{i}_{r.name}.h264") for i, (r, _) in enumerate(ladder)]
    rung_q = encode_sample(sample, [(r, h264_sample_args(r, b, fps), path) for (r, b), path in zip(ladder, outs)],
                           workdir, timeout_s, subsample, f"per-title encoding ({tag})")
    shown_q = list(rung_q)
    up = [i for i, (r, _) in enumerate(ladder) if display and (r.width, r.height) != tuple(display)]
    if up:
        scores = ffmpeg_graphs.vmaf_many([outs[i] for i in up], sample, display[0], display[1], workdir,
                                         subsample, timeout_s, upscale=True)
        for i, q in zip(up, scores):
            shown_q[i] = q
    return [(int(os.path.getsize(p) * 8 / duration_s), rq, sq) for p, rq, sq in zip(outs, rung_q, shown_q)]


def per_title_families(src: str, info: MediaInfo, rungs: list[Rung], families, *, samples: int = 3,
                       sample_seconds: float = 2.0, vmaf_subsample: int = 2, workdir: str | None = None,
                       timeout_s: float = 3600) -> list[Rung]:
    """`rungs` (with their measured H.264 VMAF) with a bitrate and a measured VMAF for each
    family of `families` but H.264, from a sample of `src` made as per_title_ladder makes it.
    See `_families_on`; this is the entry for a video whose H.264 ladder is already chosen
    (a codec upgrade)."""
    if not rungs or not [f for f in families if f != "h264"]:
        return list(rungs)
    with _scratch(workdir, "families-") as work:
        sample = os.path.join(work, "families_sample.mp4")
        length = make_sample(src, info, samples, sample_seconds, sample, timeout_s)
        return _families_on(sample, length, rungs, families, sample_fps(info), work, timeout_s, vmaf_subsample)[0]


def _families_on(sample: str, duration_s: float, rungs: list[Rung], families, fps: float, workdir: str,
                 timeout_s: float, subsample: int, slopes: dict[str, float] | None = None
                 ) -> tuple[list[Rung], dict[str, dict[str, list[tuple[int, int, float]]]]]:
    """Per-title rates for the other codec families (VP9, AV1). ladder.FAMILY_BITRATE_FACTOR
    was calibrated on fixed-ladder rungs of a few clips; on one video's per-title rungs a
    family may score points above H.264 (bits wasted: AV1 on easy content) or under it
    (VP9 at its realtime speed). So each (rung, family) is encoded on the sample at the
    factor's rate and scored at the rung's size. One that misses H.264's
    measured VMAF less FAMILY_VMAF_TOLERANCE, or beats it by more than FAMILY_VMAF_EXCESS,
    is encoded again, up to FAMILY_RETRY_ROUNDS times, at the rate `_family_next_rate`
    expects to reach H.264's VMAF (`slopes`, VMAF per unit of ln rate by rung name: the
    H.264 curve's at that rung, FAMILY_DEFAULT_SLOPE otherwise, until two points give the
    family's own). The cheapest measured rate keeping the goal is kept (else the best
    scoring one). One ffmpeg run a round, all rungs and families in it; every stored VMAF is
    a measured one. Returns the rungs (`family_bitrate_bps`, `family_vmaf`) and, by rung
    name and family, every (requested rate, bits produced, VMAF) measured."""
    others = [f for f in dict.fromkeys(families) if f != "h264"]
    if not rungs or not others:
        return list(rungs), {}
    top = top_rung(rungs)
    tried: dict[str, dict[str, list[tuple[int, int, float]]]] = {r.name: {f: [] for f in others} for r in rungs}

    def measure(jobs: list[tuple[Rung, str, int]], tag: str) -> None:
        encodes = []
        for i, (r, fam, rate) in enumerate(jobs):
            one = dataclasses.replace(r, family_bitrate_bps={**r.family_bitrate_bps, fam: rate})
            # The ladder's own options for the family (GOP, rate control) for one stream.
            encodes.append((one, [*ffmpeg_graphs.encoder_args(fam, [one], fps), "-an", "-f", "matroska"],
                            os.path.join(workdir, f"{tag}{i}_{r.name}_{fam}.mkv")))
        scores = encode_sample(sample, encodes, workdir, timeout_s, subsample,
                               f"per-title encoding ({'+'.join(others)}, {tag})")
        for (r, fam, rate), (_, _, path), q in zip(jobs, encodes, scores):
            tried[r.name][fam].append((rate, int(os.path.getsize(path) * 8 / duration_s), round(q, 2)))

    measure([(r, fam, r.bitrate_for(fam, top=r is top)) for r in rungs for fam in others], "family")
    for round_ in range(FAMILY_RETRY_ROUNDS):
        retries = []
        for r in rungs:
            if not r.vmaf:
                continue  # no H.264 score to match
            slope = (slopes or {}).get(r.name, FAMILY_DEFAULT_SLOPE)
            for fam in others:
                rate = _family_next_rate(tried[r.name][fam], r.vmaf, slope, cap=int(r.video_bitrate_bps * 2.5))
                if rate:
                    retries.append((r, fam, rate))
        if not retries:
            break
        measure(retries, f"family_retry{round_ + 1}_")
    out = []
    for r in rungs:
        rates, scores = dict(r.family_bitrate_bps), dict(r.family_vmaf)
        for fam in others:
            points = tried[r.name][fam]
            keep = [p for p in points if p[2] >= r.vmaf - FAMILY_VMAF_TOLERANCE] if r.vmaf else points[:1]
            rate, _, q = min(keep) if keep else max(points, key=lambda p: p[2])
            rates[fam], scores[fam] = rate, q
        out.append(dataclasses.replace(r, family_bitrate_bps=rates, family_vmaf=scores))
    return out, tried


def _family_next_rate(points: list[tuple[int, int, float]], h264_vmaf: float, slope: float, cap: int) -> int | None:
    """The next rate to try for one family's rung (step 8), or None when it is settled.
    `points`: (rate, bits, VMAF) measured so far. Settled: its cheapest rate keeping H.264's
    VMAF (less FAMILY_VMAF_TOLERANCE) beats it by at most FAMILY_VMAF_EXCESS. Otherwise
    aim at H.264's VMAF: between the two nearest points that straddle it (linear in ln
    rate), or past the nearest one along the curve's slope (the secant of the last two
    points once there are two on that side; `slope`, VMAF per ln rate, before), at most
    FAMILY_MAX_STEP times away and never over `cap`."""
    goal = h264_vmaf - FAMILY_VMAF_TOLERANCE
    ok = sorted(p for p in points if p[2] >= goal)
    short = sorted(p for p in points if p[2] < goal)
    if ok and ok[0][2] <= h264_vmaf + FAMILY_VMAF_EXCESS:
        return None
    if ok and short and short[-1][0] < ok[0][0]:  # straddled: interpolate
        (ra, _, qa), (rb, _, qb) = short[-1], ok[0]
        t = (h264_vmaf - qa) / (qb - qa) if qb > qa else 0.5
        rate = math.exp(math.log(ra) + min(max(t, 0.1), 0.9) * (math.log(rb) - math.log(ra)))
    else:
        side = ok if ok else short
        near = side[0] if ok else side[-1]  # the cheapest above, or the best below
        if len(side) >= 2:
            (r0, _, q0), (r1, _, q1) = (side[0], side[1]) if ok else (side[-2], side[-1])
            if q1 != q0 and r1 != r0:
                slope = (q1 - q0) / math.log(r1 / r0)
        slope = min(max(slope, 2.0), 30.0)
        step = min(max(math.exp((h264_vmaf - near[2]) / slope), 1 / FAMILY_MAX_STEP), FAMILY_MAX_STEP)
        rate = near[0] * step
    rate = int(min(rate, cap)) // 1000 * 1000
    if rate <= 0 or any(abs(rate / p[0] - 1) < 0.05 for p in points):
        return None  # nothing new to learn
    return rate


def encode_sample(sample: str, encodes: list[tuple[Rung, list[str], str]], workdir: str, timeout_s: float,
                  subsample: int, what: str) -> list[float]:
    """VMAF at its rung's size of each (rung, encoder options, output path): all encoded in
    one ffmpeg run from one decode of the sample, each picture size scaled once and split to
    its encoders (as the ladder will be); then scored, one VMAF run per picture size."""
    ffmpeg_graphs.encode_pictures(sample, [((r.width, r.height), options, path) for r, options, path in encodes],
                                  timeout_s, what)
    sizes: dict[tuple[int, int], list[int]] = {}
    for i, (r, _, _) in enumerate(encodes):
        sizes.setdefault((r.width, r.height), []).append(i)
    scores = [0.0] * len(encodes)
    for (w, h), idx in sizes.items():
        paths = [encodes[i][2] for i in idx]
        for i, q in zip(idx, ffmpeg_graphs.vmaf_many(paths, sample, w, h, workdir, subsample, timeout_s)):
            scores[i] = q
    return scores


def make_rung(name: str, width: int, height: int, bitrate: int, h264_level: str = "4.0",
              frame_rate: float = 30.0) -> Rung:
    """A ladder.Rung whatever its current field set (h264_level was a field, is now derived)."""
    names = {f.name for f in dataclasses.fields(Rung)}
    extra = {"h264_level": h264_level, "frame_rate": frame_rate}
    return Rung(name=name, width=width, height=height, video_bitrate_bps=bitrate,
                      **{k: v for k, v in extra.items() if k in names})


def _with_bitrate(rung: Rung, bitrate: int, vmaf: float) -> Rung:
    if "vmaf" in {f.name for f in dataclasses.fields(rung)}:
        return dataclasses.replace(rung, video_bitrate_bps=bitrate, vmaf=vmaf)
    return dataclasses.replace(rung, video_bitrate_bps=bitrate)


def _sample_duration(path: str) -> float:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return (c.duration or 0) / 1_000_000

"""The top rung's quality check: the rung the big screens get must hold VMAF `min_vmaf`
(issue 29: 93) where the source allows, without giving every video's top rung the lower
CRF only a few need (+25-31 % bits on the rung most bytes are served from).

After the ladder is encoded, its top H.264 rung is scored against the source (VMAF
vmaf_v0.6.1 at the rung's size, every `subsample`-th frame: ffmpeg_graphs.rung_vmaf). When
it falls short, `retry_crf` estimates the x264 CRF that reaches the goal from that one
measured point (`vmaf_per_crf`: VMAF gained per CRF step, a conservative slope: Big Buck
Bunny's 720p measured 1.1-1.2 between CRF 23 and 21), bounded by `min_crf`, and the top
rung (of every family encoded with it) is encoded again at that CRF before anything is
packaged or stored. Once only: the re-encode is not scored again. Where the rung's VBV cap
already binds (content too hard for the cap), a lower CRF buys nothing: it is neither scored nor redone.
A score more than `max_shortfall` under the goal is not trusted to steer the CRF.

Scoring costs a second decode of the source and a VMAF pass (13-19 % of the ladder's CPU on
the bench), so it is spent only where it may find something: x264 reports the PSNR of what
it encoded for almost nothing (`ffmpeg_graphs.top_rung_psnr`), and a top rung at
`score_below_psnr_db` or more has always held the goal on the clips measured
(`wants_score`).

This module decides; the graphs it runs (score, re-encode) are ffmpeg_graphs'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TopRungCheck:
    min_vmaf: float = 93.0
    vmaf_per_crf: float = 1.0
    min_crf: float = 18.0
    subsample: int = 4
    # The rung averages at least this share of its peak cap: the cap, not the CRF, sets its bits.
    cap_bound_share: float = 0.9
    # Further below the goal than this, the score is not trusted to steer the CRF: a capped
    # x264 CRF 23 rung scores 88-98 on the bench clips, and frames paired wrongly (a variable
    # frame rate the encode evened out) score far lower; the rung is kept rather than paid
    # the floor's bits for a measurement error.
    max_shortfall: float = 8.0
    # Scored only under this luma PSNR (x264's own, mean over frames); 0: always scored.
    score_below_psnr_db: float = 46.0

    @classmethod
    def from_config(cls, tc) -> TopRungCheck | None:
        """The check of `tc` (a TranscoderConfig); None when it is off (top_rung_min_vmaf 0)."""
        if tc.top_rung_min_vmaf <= 0:
            return None
        if tc.top_rung_vmaf_per_crf <= 0 or tc.top_rung_vmaf_subsample < 1 or not 0 < tc.top_rung_min_crf <= 51:
            raise ValueError("transcoder.top_rung_*: vmaf_per_crf must be > 0, vmaf_subsample >= 1, "
                             "min_crf in (0, 51]")
        if tc.top_rung_score_below_psnr_db < 0:
            raise ValueError("transcoder.top_rung_score_below_psnr_db must be >= 0 (0: score every top rung)")
        return cls(min_vmaf=tc.top_rung_min_vmaf, vmaf_per_crf=tc.top_rung_vmaf_per_crf,
                   min_crf=tc.top_rung_min_crf, subsample=tc.top_rung_vmaf_subsample,
                   score_below_psnr_db=tc.top_rung_score_below_psnr_db)

    def wants_score(self, psnr_db: float | None, average_bps: float, cap_bps: float) -> bool:
        """Whether the top rung is worth a VMAF pass: not where its cap binds (no score could
        change anything), else where the encoder's PSNR of it is under the gate (None: not
        reported, so scored)."""
        if self.cap_binds(average_bps, cap_bps):
            return False
        return psnr_db is None or self.score_below_psnr_db <= 0 or psnr_db < self.score_below_psnr_db

    def cap_binds(self, average_bps: float, cap_bps: float) -> bool:
        """The rung's VBV cap, not its CRF, sets its bits: a lower CRF would buy nothing."""
        return cap_bps > 0 and average_bps >= self.cap_bound_share * cap_bps

    def retry_crf(self, crf: float, vmaf: float, average_bps: float, cap_bps: float) -> float | None:
        """The x264 CRF to encode the top rung at again, or None to keep it: it reached
        `min_vmaf`, it is not constant quality (`crf` 0), the CRF is at the floor already, or
        its cap binds (`average_bps` near `cap_bps`), or the score is implausibly low
        (`max_shortfall`). Rounded down to a half step."""
        if crf <= 0 or vmaf >= self.min_vmaf or crf <= self.min_crf or vmaf < self.min_vmaf - self.max_shortfall:
            return None
        if self.cap_binds(average_bps, cap_bps):
            return None
        wanted = crf - (self.min_vmaf - vmaf) / self.vmaf_per_crf
        return max(self.min_crf, math.floor(wanted * 2) / 2)

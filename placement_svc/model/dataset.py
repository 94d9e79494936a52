"""The view history the model reads: one dense (video x region x day) array plus per-video metadata.

One job: hold a data set in the shape every model part expects (`Dataset`). The daily job
builds it from the view counts and the catalogue; research loads it from CSVs
(placement_research.dataset_csv) or simulates it (placement_research.simulator).
A video whose upload date is not known is imputed to its first day with views and becomes
known to the planner only the morning AFTER that day (knowing it exists on its first day
would leak that day's views).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    dates: list[dt.date]  # day index -> calendar date, contiguous
    regions: list[str]
    video_ids: list[str]
    views: np.ndarray  # (n_videos, n_regions, n_days) float32
    upload_day: np.ndarray  # (n_videos,) int, day index of upload (may be < 0); imputed = first_seen
    upload_known: np.ndarray  # (n_videos,) bool
    first_seen: np.ndarray  # (n_videos,) int, first day with views, n_days if never
    language: np.ndarray  # (n_videos,) str
    category: np.ndarray  # (n_videos,) str
    channel: np.ndarray  # (n_videos,) int, -1 = unknown
    channel_ids: list[str]
    size_bytes: np.ndarray  # (n_videos,) float64

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def known_from(self) -> np.ndarray:
        """First day whose morning decision may cover the video: its upload day when the
        upload date is given (cold start), else the day after its first views."""
        return np.where(self.upload_known, self.upload_day, self.first_seen + 1)

    def day_index(self, date: dt.date) -> int:
        return (date - self.dates[0]).days

    def weekday(self, d: int) -> int:
        return (self.dates[0] + dt.timedelta(days=d)).weekday()

    def with_views(self, views: np.ndarray) -> "Dataset":
        """A copy with other view counts (same shape), e.g. for leakage tests."""
        out = Dataset(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.views = views.astype(np.float32)
        return out


"""Shared fixtures for the tests/test_placement_*.py suites (small simulated sets; no tests here)."""
from __future__ import annotations

import functools

from placement_research.simulator import SimConfig, simulate
from placement_svc.model.learned import TrainConfig

SMALL = SimConfig(n_videos=1500, n_days=24, uploads_per_day=15.0)
FAST_TRAIN = TrainConfig(max_rows=20_000, mlp_max_iter=15, gbm_max_iter=60, hidden=(32, 16))
TRAIN_END = 15
TEST_DAYS = 8


@functools.lru_cache(maxsize=4)
def small_sim(seed: int = 1):
    return simulate(SMALL, seed=seed)

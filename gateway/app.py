"""Builds the gateway's FastAPI app: its shared state, error handlers, request limits,
routers and instrumentation. Routes live in gateway/routes/, one module per resource.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from longtail_common.adapters import make_object_store
from longtail_common.config import Config
from gateway.beacons import PlaybackLedger
from gateway.dependencies import ServiceLinks
from gateway.errors import register_error_handlers
from gateway.house_ad import HouseAd
from gateway.html_pages import STATIC_DIR, PageRenderer, asset_versions
from gateway.instrumentation import instrument
from gateway.limits import RequestLimits
from gateway.routes import health, media, pages, uploads, videos, views
from gateway.routes.health import ServiceHealth
from gateway.signing import make_signer
from gateway.video_cache import ChangeListener, VideoCache


@asynccontextmanager
async def listening_for_changes(app: FastAPI):
    """While the app serves, its video cache hears every video.changed event."""
    listener = ChangeListener(app.state.config, app.state.videos, asyncio.get_running_loop())
    listener.start()
    yield
    listener.stop()


def create_app(cfg: Config) -> FastAPI:
    app = FastAPI(title="Longtail gateway", version="1", lifespan=listening_for_changes)
    instrument(app)
    app.add_middleware(RequestLimits, idle_timeout_s=cfg.http.body_idle_timeout_s,
                       max_body_bytes=cfg.http.max_body_bytes)
    app.state.config = cfg
    app.state.objects = make_object_store(cfg)
    app.state.links = ServiceLinks(cfg)
    app.state.health = ServiceHealth(cfg)
    app.state.pages = PageRenderer(asset_versions())
    app.state.house_ad = HouseAd(cfg.data_path / "ads" / "house-preroll.mp4")
    app.state.signer = make_signer(cfg)
    app.state.ledger = PlaybackLedger(cfg.playback.ledger_size)
    app.state.videos = VideoCache(cfg.gateway.video_cache_ttl_s, cfg.gateway.video_cache_size)
    register_error_handlers(app)
    for router in (videos.router, views.router, uploads.router, media.router, health.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages.router)
    return app

"""Builds the gateway's FastAPI app: its shared state, error handlers, request limits,
rate limits, routers and instrumentation. Routes live in gateway/routes/, one module per resource.
"""
from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.staticfiles import StaticFiles

from longtail_common.adapters import make_object_store, make_rate_limit_storage
from longtail_common.config import Config
from longtail_common.mesh_identity import MeshSigner, configure_client_identity, mesh_secret
from gateway.auth.cookies import CookiePolicy, Csrf
from gateway.auth.oidc import OidcProvider
from gateway.auth.principal import Authenticator
from gateway.auth.throttle import FailureWindow
from gateway.beacons import PlaybackLedger
from gateway.dependencies import ServiceLinks
from gateway.edge_fills import FillAnnouncer
from gateway.errors import register_error_handlers
from gateway.fast_routes import FastRoutes
from gateway.house_ad import HouseAd
from gateway.html_pages import STATIC_DIR, PageRenderer, asset_versions
from gateway.instrumentation import instrument
from gateway.limits import RequestLimits
from gateway.ratelimit import ClientAddresses, RateLimitMiddleware, RateLimits, document_rate_limits, limit_account
from gateway.frames import FrameMaker
from gateway.routes import (account, audio_tracks, captions, channels, downloads, health, media, my_videos, pages,
                            thumbnails, uploads, videos, views, webhooks)
from gateway.routes.health import ServiceHealth
from gateway.signing import make_signer
from gateway.video_cache import ChangeListener, VideoCache


@asynccontextmanager
async def listening_for_changes(app: FastAPI):
    """While the app serves, its video cache hears every video.changed event."""
    listener = ChangeListener(app.state.config, app.state.videos, asyncio.get_running_loop())
    listener.start()
    if getattr(app.state, "freeze_heap_at_startup", False):
        freeze_heap()
    yield
    listener.stop()


def freeze_heap() -> None:
    """Moves what startup made (modules, protobuf descriptors, the app; ~140k objects) out
    of the collector's sight: without it every full collection walks them all, a pause of
    tens of ms under load (the p99 of the fast calls; BENCHMARKS.md, serving load). Only a
    serving process's entry point asks for it (gateway/__main__.py): a test process making
    many apps would keep their garbage for good."""
    gc.collect()
    gc.freeze()


class GatewayApp(FastAPI):
    """The FastAPI app, with the hottest calls answered ahead of it (gateway/fast_routes.py)."""

    fast_routes: FastRoutes | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.fast_routes is not None:
            if self.root_path:
                scope["root_path"] = self.root_path
            if await self.fast_routes(scope, receive, send):
                return
        await super().__call__(scope, receive, send)


def create_app(cfg: Config) -> GatewayApp:
    app = GatewayApp(title="Longtail gateway", version="1", lifespan=listening_for_changes)
    instrument(app)
    app.add_middleware(RequestLimits, idle_timeout_s=cfg.http.body_idle_timeout_s,
                       max_body_bytes=cfg.http.max_body_bytes)
    # Added last, so it runs first: a refused request costs no body read and no route.
    app.state.rate_limits = RateLimits(cfg.limits, make_rate_limit_storage(cfg))
    rate_limiting = {"limits": app.state.rate_limits, "addresses": ClientAddresses(cfg.limits),
                     "sign_in_paths": cfg.limits.sign_in_paths}
    app.add_middleware(RateLimitMiddleware, **rate_limiting)
    app.state.config = cfg
    app.state.objects = make_object_store(cfg)
    app.state.links = ServiceLinks(cfg)
    app.state.fills = FillAnnouncer(app.state.links)
    app.state.health = ServiceHealth(cfg)
    app.state.cookies = CookiePolicy.from_config(cfg)
    app.state.pages = PageRenderer(asset_versions(), app.state.cookies)
    app.state.house_ad = HouseAd(cfg.data_path / "ads" / "house-preroll.mp4")
    app.state.signer = make_signer(cfg)
    app.state.ledger = PlaybackLedger(cfg.playback.ledger_size)
    app.state.videos = VideoCache(cfg.gateway.video_cache_ttl_s, cfg.gateway.video_cache_size)
    app.state.frames = FrameMaker(app.state.objects, cfg.thumbnails.max_concurrent_frames,
                                  cfg.thumbnails.frame_timeout_s)
    app.state.thumbnails = thumbnails.ThumbnailCache(app.state.objects, app.state.frames)
    secret = mesh_secret(cfg)
    # Calls to the services carry the request's account, once authenticated; none for anonymous ones.
    configure_client_identity(MeshSigner(secret, cfg.auth.mesh_token_ttl_s), default=None)
    oidc = OidcProvider(cfg.auth.oidc) if cfg.auth.oidc.issuer else None
    app.state.auth = Authenticator(app.state.links.accounts, secret, Csrf(secret, app.state.cookies), oidc)
    app.state.sign_in_failures = FailureWindow(cfg.auth.sign_in_max_failures, cfg.auth.sign_in_failure_window_s)
    register_error_handlers(app)
    # Signed-in requests also count against their account's limits (not stream bytes or probes).
    for router in (videos.router, channels.router, captions.router, audio_tracks.router, downloads.router,
                   thumbnails.router, views.router, uploads.router, account.router, webhooks.router):
        app.include_router(router, dependencies=[Depends(limit_account)])
    for router in (media.router, health.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (pages.router, my_videos.router):
        app.include_router(router, dependencies=[Depends(limit_account)])
    document_rate_limits(app, cfg.limits.sign_in_paths)
    if cfg.gateway.fast_routes:
        app.fast_routes = FastRoutes(app, RateLimitMiddleware(None, **rate_limiting))
    return app

"""The gateway's shared resources, handed to routes as FastAPI dependencies.

create_app keeps them on app.state: the config, the object store, the service links
(gRPC stubs and the views producer), the page renderer, the playback signer, the
ledger of playbacks' beacons and the authenticator. A route names what it uses
with the Annotated types at the bottom (`metadata: MetadataStub`), so its signature says
which backends it touches and a test can override any of them.

`current_principal` says who the request comes from (None: anonymous) and makes the
gRPC calls of the rest of the request carry that account; `require_principal` answers 401
to an anonymous request.
"""
from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request

from longtail.accounts.v1 import account_service_pb2_grpc as apb_grpc
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.placement.v1 import placement_service_pb2_grpc as ppb_grpc
from longtail.search.v1 import search_service_pb2_grpc as spb_grpc
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail.webhook.v1 import webhook_service_pb2_grpc as wpb_grpc
from longtail_common.adapters import make_topic_bus
from longtail_common.config import Config
from longtail_common.grpc_server import aio_client_channel
from longtail_common.mesh_identity import set_acting_as
from longtail_common.ports import ObjectStore, TopicProducer
from gateway.auth.principal import Authenticator, Principal, sign_in_required
from gateway.beacons import PlaybackLedger
from gateway.house_ad import HouseAd
from gateway.html_pages import PageRenderer, Viewer
from gateway.signing import PlaybackSigner


class ServiceLinks:
    """Stubs of the gRPC services and the views producer, each opened on first use.

    Lazily, because a grpc.aio channel belongs to the event loop that opens it, and the
    server's loop only runs once the app is served; the producer may block while it
    connects, so it is opened from the worker thread that publishes."""

    def __init__(self, cfg: Config):
        self._cfg = cfg
        self._metadata: mpb_grpc.MetadataServiceStub | None = None
        self._accounts: apb_grpc.AccountServiceStub | None = None
        self._upload: upb_grpc.UploadServiceStub | None = None
        self._search: spb_grpc.SearchServiceStub | None = None
        self._webhook: wpb_grpc.WebhookServiceStub | None = None
        self._placement: ppb_grpc.PlacementServiceStub | None = None
        self._views_producer: TopicProducer | None = None
        self._producer_lock = threading.Lock()

    def metadata(self) -> mpb_grpc.MetadataServiceStub:
        if self._metadata is None:
            self._metadata = mpb_grpc.MetadataServiceStub(aio_client_channel(self._cfg, "metadata"))
        return self._metadata

    def accounts(self) -> apb_grpc.AccountServiceStub:
        """AccountService, served by metadata_svc."""
        if self._accounts is None:
            self._accounts = apb_grpc.AccountServiceStub(aio_client_channel(self._cfg, "metadata"))
        return self._accounts

    def upload(self) -> upb_grpc.UploadServiceStub:
        if self._upload is None:
            self._upload = upb_grpc.UploadServiceStub(aio_client_channel(self._cfg, "upload"))
        return self._upload

    def search(self) -> spb_grpc.SearchServiceStub:
        if self._search is None:
            self._search = spb_grpc.SearchServiceStub(aio_client_channel(self._cfg, "search"))
        return self._search

    def webhook(self) -> wpb_grpc.WebhookServiceStub:
        if self._webhook is None:
            self._webhook = wpb_grpc.WebhookServiceStub(aio_client_channel(self._cfg, "webhook"))
        return self._webhook

    def placement(self) -> ppb_grpc.PlacementServiceStub:
        """PlacementService: the view counts its views consumer keeps."""
        if self._placement is None:
            self._placement = ppb_grpc.PlacementServiceStub(aio_client_channel(self._cfg, "placement"))
        return self._placement

    def views_producer(self) -> TopicProducer:
        """Blocking: call from a worker thread."""
        with self._producer_lock:
            if self._views_producer is None:
                self._views_producer = make_topic_bus(self._cfg).producer()
            return self._views_producer


# The dependencies are coroutines so they run on the event loop (FastAPI runs plain
# functions in a thread pool, where no loop is there to own a new gRPC channel).
async def get_config(request: Request) -> Config:
    return request.app.state.config


async def get_object_store(request: Request) -> ObjectStore:
    return request.app.state.objects


async def get_service_links(request: Request) -> ServiceLinks:
    return request.app.state.links


async def get_metadata_stub(request: Request) -> mpb_grpc.MetadataServiceStub:
    return request.app.state.links.metadata()


async def get_accounts_stub(request: Request) -> apb_grpc.AccountServiceStub:
    return request.app.state.links.accounts()


async def get_authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


async def current_principal(request: Request) -> Principal | None:
    principal = await request.app.state.auth.authenticate(request)
    set_acting_as(principal.mesh if principal else None)
    return principal


async def require_principal(principal: Annotated[Principal | None, Depends(current_principal)]) -> Principal:
    if principal is None:
        raise sign_in_required()
    return principal


async def page_viewer(request: Request, principal: Annotated[Principal | None, Depends(current_principal)]) -> Viewer:
    """The page's visitor, for its header and forms."""
    token, new_nonce = request.app.state.auth.csrf.token_for(request)
    return Viewer(principal.username if principal else "", token, new_nonce)


async def get_upload_stub(request: Request) -> upb_grpc.UploadServiceStub:
    return request.app.state.links.upload()


async def get_search_stub(request: Request) -> spb_grpc.SearchServiceStub:
    return request.app.state.links.search()


async def get_webhook_stub(request: Request) -> wpb_grpc.WebhookServiceStub:
    return request.app.state.links.webhook()
async def get_placement_stub(request: Request) -> ppb_grpc.PlacementServiceStub:
    return request.app.state.links.placement()


async def get_page_renderer(request: Request) -> PageRenderer:
    return request.app.state.pages


async def get_house_ad(request: Request) -> HouseAd:
    return request.app.state.house_ad


async def get_signer(request: Request) -> PlaybackSigner:
    return request.app.state.signer


async def get_ledger(request: Request) -> PlaybackLedger:
    return request.app.state.ledger


Cfg = Annotated[Config, Depends(get_config)]
Objects = Annotated[ObjectStore, Depends(get_object_store)]
Links = Annotated[ServiceLinks, Depends(get_service_links)]
MetadataStub = Annotated[mpb_grpc.MetadataServiceStub, Depends(get_metadata_stub)]
AccountsStub = Annotated[apb_grpc.AccountServiceStub, Depends(get_accounts_stub)]
Auth = Annotated[Authenticator, Depends(get_authenticator)]
CurrentPrincipal = Annotated[Principal | None, Depends(current_principal)]
RequiredPrincipal = Annotated[Principal, Depends(require_principal)]
PageViewer = Annotated[Viewer, Depends(page_viewer)]
UploadStub = Annotated[upb_grpc.UploadServiceStub, Depends(get_upload_stub)]
SearchStub = Annotated[spb_grpc.SearchServiceStub, Depends(get_search_stub)]
WebhookStub = Annotated[wpb_grpc.WebhookServiceStub, Depends(get_webhook_stub)]
PlacementStub = Annotated[ppb_grpc.PlacementServiceStub, Depends(get_placement_stub)]
Pages = Annotated[PageRenderer, Depends(get_page_renderer)]
HouseAdClip = Annotated[HouseAd, Depends(get_house_ad)]
Signer = Annotated[PlaybackSigner, Depends(get_signer)]
Ledger = Annotated[PlaybackLedger, Depends(get_ledger)]

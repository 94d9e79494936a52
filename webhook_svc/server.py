"""webhook_svc process: the WebhookService API, the topic consumer that turns events into
deliveries (events.EventFanout) and the deliverer that sends them (deliverer.Deliverer).

Ownership is checked here: an account sees and changes its own endpoints only (another
account's is NOT_FOUND, as one that does not exist); admins and services any.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import time

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.webhook.v1 import webhook_service_pb2 as pb
from longtail.webhook.v1 import webhook_service_pb2_grpc as pb_grpc
from longtail_common.adapters import make_webhook_store
from longtail_common.config import Config, load_config
from longtail_common.grpc_server import client_channel
from longtail_common.mesh_identity import caller, may_act_for
from longtail_common.ports import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    DeliveryRecord,
    WebhookEndpointRecord,
    WebhookStore,
    is_valid_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Background, Backends, Consumer, Needs, Running, run_service
from webhook_svc.deliverer import Deliverer
from webhook_svc.events import EVENT_TYPES, TOPICS, EventFanout, EventSource
from webhook_svc.secret_box import SecretBox, new_secret
from webhook_svc.targets import TargetRefused, check_url, parse_networks

CONSUMER_GROUP = "webhook"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_DESCRIPTION_CHARS = 200
STATES = {DELIVERY_PENDING: pb.DELIVERY_STATE_PENDING, DELIVERY_SUCCEEDED: pb.DELIVERY_STATE_SUCCEEDED,
          DELIVERY_FAILED: pb.DELIVERY_STATE_FAILED}


def _timestamp(us: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def webhook_message(record: WebhookEndpointRecord) -> pb.Webhook:
    return pb.Webhook(id=record.webhook_id, account_id=record.account_id, url=record.url,
                      event_types=list(record.event_types), description=record.description,
                      create_time=_timestamp(record.create_time_us))


def delivery_message(record: DeliveryRecord) -> pb.Delivery:
    message = pb.Delivery(id=record.delivery_id, webhook_id=record.webhook_id, event_id=record.event_id,
                          event_type=record.event_type, payload=record.payload,
                          state=STATES.get(record.state, pb.DELIVERY_STATE_UNSPECIFIED),
                          create_time=_timestamp(record.create_time_us), attempt_count=record.attempt_count)
    if record.state == DELIVERY_PENDING:
        message.next_attempt_time.CopyFrom(_timestamp(record.next_attempt_us))
    for attempt in json.loads(record.attempts_json or "[]"):
        message.attempts.append(pb.DeliveryAttempt(attempt_time=_timestamp(attempt["t"]), status_code=attempt["status"],
                                                   error=attempt["error"], duration_ms=attempt["ms"]))
    return message


class WebhookServicer(pb_grpc.WebhookServiceServicer):
    def __init__(self, store: WebhookStore, box: SecretBox, cfg: Config, clock=time.time):
        self.store = store
        self.box = box
        self.cfg = cfg
        self.allow = parse_networks(cfg.webhooks.allow_networks)
        self.clock = clock

    def _account(self, context, account_id: str) -> str:
        """The account a call acts for: as asked, else the caller's own; checked."""
        principal = caller()
        account_id = account_id or (principal.account_id if principal else "")
        if not is_valid_id(account_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account_id is required")
        if not may_act_for(account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not your account")
        return account_id

    def _endpoint(self, context, webhook_id: str) -> WebhookEndpointRecord:
        """The endpoint, if the caller may see it; NOT_FOUND otherwise."""
        record = self.store.get_endpoint(webhook_id) if is_valid_id(webhook_id) else None
        if record is None or not may_act_for(record.account_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"webhook {webhook_id} not found")
        return record

    def _event_types(self, context, asked) -> tuple[str, ...]:
        unknown = sorted(set(asked) - set(EVENT_TYPES))
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown event types {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)})")
        return tuple(sorted(set(asked)))

    def CreateWebhook(self, request, context):
        account_id = self._account(context, request.account_id)
        wanted = request.webhook
        if len(wanted.description) > MAX_DESCRIPTION_CHARS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"description is over {MAX_DESCRIPTION_CHARS} characters")
        event_types = self._event_types(context, wanted.event_types)
        try:
            url = check_url(wanted.url, self.allow)
        except TargetRefused as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"url refused: {exc}")
        if len(self.store.list_endpoints(account_id)) >= self.cfg.webhooks.max_endpoints_per_account:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"at most {self.cfg.webhooks.max_endpoints_per_account} webhooks per account")
        secret = new_secret()
        record = WebhookEndpointRecord(webhook_id="wh_" + secrets.token_hex(12), account_id=account_id, url=url,
                                       secret_ciphertext=self.box.seal(secret), event_types=event_types,
                                       description=wanted.description, create_time_us=int(self.clock() * 1_000_000))
        self.store.create_endpoint(record)
        return pb.CreateWebhookResponse(webhook=webhook_message(record), secret=secret)

    def GetWebhook(self, request, context):
        return webhook_message(self._endpoint(context, request.id))

    def ListWebhooks(self, request, context):
        account_id = self._account(context, request.account_id)
        return pb.ListWebhooksResponse(webhooks=[webhook_message(r) for r in self.store.list_endpoints(account_id)])

    def DeleteWebhook(self, request, context):
        self.store.delete_endpoint(self._endpoint(context, request.id).webhook_id)
        return empty_pb2.Empty()

    def ListDeliveries(self, request, context):
        endpoint = self._endpoint(context, request.webhook_id)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        try:
            page, cursor = self.store.list_deliveries(endpoint.webhook_id, request.page_size or DEFAULT_PAGE_SIZE,
                                                      request.page_token or None)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ListDeliveriesResponse(deliveries=[delivery_message(d) for d in page], next_page_token=cursor or "")

    def RedeliverDelivery(self, request, context):
        endpoint = self._endpoint(context, request.webhook_id)
        for _ in range(5):  # a deliverer's claim may move the version under us
            found = self.store.get_delivery(request.delivery_id) if is_valid_id(request.delivery_id) else None
            if found is None or found.webhook_id != endpoint.webhook_id:
                context.abort(grpc.StatusCode.NOT_FOUND, f"delivery {request.delivery_id} not found")
            again = dataclasses.replace(found, state=DELIVERY_PENDING, next_attempt_us=int(self.clock() * 1_000_000),
                                        first_attempt_us=0, version=found.version + 1)
            if self.store.update_delivery(again, found.version):
                return delivery_message(again)
        context.abort(grpc.StatusCode.ABORTED, "the delivery kept changing; try again")


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        """The servicer, the consumer that queues deliveries and the deliverer that sends them."""
        store = make_webhook_store(cfg)
        box = SecretBox.from_config(cfg)
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
        fanout = Consumer("webhook-events", backends.bus, TOPICS, CONSUMER_GROUP,
                          EventFanout(store, EventSource(metadata), time.time), max_attempts=9, join_timeout_s=30)
        deliverer = Deliverer(store, box, cfg.webhooks)
        return Running(WebhookServicer(store, box, cfg), consumers=[fanout],
                       background=[Background("webhook-deliverer", deliverer.run)],
                       close=[backends.bus.close, deliverer.close, store.close])

    run_service(cfg, name="longtail.webhook.v1.WebhookService", address=cfg.services.webhook,
                add_servicer=pb_grpc.add_WebhookServiceServicer_to_server, needs=Needs(topics=True), start=start)


def main() -> None:
    setup_logging("webhook_svc")
    serve(load_config())

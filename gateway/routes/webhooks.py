"""Creators' webhooks: `/v1/webhooks` (register, list, get, delete an endpoint) and its
delivery log (`/deliveries`, and the `:redeliver` custom method), for the signed-in account.

webhook_svc checks ownership: another account's endpoint is 404, as one that does not exist
(admins see everyone's). The signing secret is in the creation's answer only.
"""
from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, ConfigDict, Field

from longtail.webhook.v1 import webhook_service_pb2 as wpb
from gateway.dependencies import RequiredPrincipal, WebhookStub
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.validation import require_page_token
from longtail_common.ports import is_valid_id

router = APIRouter()
WEBHOOK_API = error_responses(401, 403, 404, *SERVICE_ERRORS)
STATES = {wpb.DELIVERY_STATE_PENDING: "pending", wpb.DELIVERY_STATE_SUCCEEDED: "succeeded",
          wpb.DELIVERY_STATE_FAILED: "failed"}


class CreateWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048)
    event_types: list[str] = Field(default_factory=list, max_length=10)
    description: str = Field(default="", max_length=200)


def webhook_json(webhook: wpb.Webhook) -> dict:
    return {"id": webhook.id, "url": webhook.url, "event_types": list(webhook.event_types),
            "description": webhook.description, "create_time": webhook.create_time.ToJsonString()}


def delivery_json(delivery: wpb.Delivery) -> dict:
    return {"id": delivery.id, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "state": STATES.get(delivery.state, "unknown"), "payload": delivery.payload,
            "create_time": delivery.create_time.ToJsonString(),
            "next_attempt_time": (delivery.next_attempt_time.ToJsonString()
                                  if delivery.HasField("next_attempt_time") else None),
            "attempt_count": delivery.attempt_count,
            "attempts": [MessageToDict(a, preserving_proto_field_name=True,
                                       always_print_fields_with_no_presence=True) for a in delivery.attempts]}


def require_id(value: str, what: str) -> str:
    """An id of the right shape; else 404 at once, as none such can exist."""
    if not is_valid_id(value):
        raise ApiError(404, "NOT_FOUND", f"{what} {value} not found")
    return value


@router.post("/v1/webhooks", status_code=201, responses={**WEBHOOK_API, **error_responses(400, 409, 422)})
async def create_webhook(body: CreateWebhookBody, principal: RequiredPrincipal, webhook: WebhookStub):
    """Registers an endpoint of the caller's; `secret` (to verify signatures) is in this answer only."""
    created = await grpc_call(webhook.CreateWebhook(wpb.CreateWebhookRequest(
        account_id=principal.account_id,
        webhook=wpb.Webhook(url=body.url, event_types=body.event_types, description=body.description)), timeout=15))
    return {**webhook_json(created.webhook), "secret": created.secret}


@router.get("/v1/webhooks", responses=WEBHOOK_API)
async def list_webhooks(principal: RequiredPrincipal, webhook: WebhookStub):
    listed = await grpc_call(webhook.ListWebhooks(wpb.ListWebhooksRequest(account_id=principal.account_id),
                                                  timeout=15))
    return {"webhooks": [webhook_json(w) for w in listed.webhooks]}


@router.get("/v1/webhooks/{webhook_id}", responses=WEBHOOK_API)
async def get_webhook(webhook_id: str, principal: RequiredPrincipal, webhook: WebhookStub):
    found = await grpc_call(webhook.GetWebhook(wpb.GetWebhookRequest(id=require_id(webhook_id, "webhook")),
                                               timeout=15))
    return webhook_json(found)


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=WEBHOOK_API)
async def delete_webhook(webhook_id: str, principal: RequiredPrincipal, webhook: WebhookStub):
    await grpc_call(webhook.DeleteWebhook(wpb.DeleteWebhookRequest(id=require_id(webhook_id, "webhook")), timeout=15))
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries", responses={**WEBHOOK_API, **error_responses(400, 422)})
async def list_deliveries(webhook_id: str, principal: RequiredPrincipal, webhook: WebhookStub,
                          page_size: int = Query(default=20, ge=1, le=100), page_token: str = ""):
    """The endpoint's deliveries, newest first, with their last attempts."""
    listed = await grpc_call(webhook.ListDeliveries(wpb.ListDeliveriesRequest(
        webhook_id=require_id(webhook_id, "webhook"), page_size=page_size,
        page_token=require_page_token(page_token)), timeout=15))
    return {"deliveries": [delivery_json(d) for d in listed.deliveries], "next_page_token": listed.next_page_token}


@router.post("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}:redeliver", status_code=202,
             responses={**WEBHOOK_API, **error_responses(409)})
async def redeliver(webhook_id: str, delivery_id: str, principal: RequiredPrincipal, webhook: WebhookStub):
    """Sends the delivery again now (same `webhook-id`, a fresh signature and a new day of retries)."""
    again = await grpc_call(webhook.RedeliverDelivery(wpb.RedeliverDeliveryRequest(
        webhook_id=require_id(webhook_id, "webhook"), delivery_id=require_id(delivery_id, "delivery")), timeout=15))
    return delivery_json(again)

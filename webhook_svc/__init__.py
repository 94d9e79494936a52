"""webhook_svc: creators' webhooks.

Its one job: turn the platform's topics into the events a creator subscribes to
(`video.uploaded`, `video.ready`, `video.failed`, `captions.ready`, `video.deleted`) and
deliver each to the creator's endpoints, signed as the Standard Webhooks specification says,
retried with exponential backoff on a schedule kept in the webhook store (a restarted
deliverer resumes it), with a delivery log and a redeliver call (WebhookService).
"""

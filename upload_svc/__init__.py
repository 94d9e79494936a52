"""upload_svc: takes original files in as resumable uploads (gRPC UploadService).

Its one job: append bytes at an offset into a staging file until the declared length is
reached, then move the original into the temporary `raw` bucket, mark the video
PROCESSING in metadata_svc, and publish a TranscodeRequest on `transcode.requests`.
The gateway speaks tus 1.0.0 to clients and forwards to this service.
"""

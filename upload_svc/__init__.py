"""upload_svc: takes original files in as resumable uploads (gRPC UploadService).

Its one job: append bytes at an offset, staged in the object store (so any replica serves
any request), until the declared length is reached, then make them the original in the
temporary `raw` bucket, mark the video PROCESSING in metadata_svc, and publish a
TranscodeRequest on `transcode.requests`. The gateway speaks tus 1.0.0 to clients and
forwards to this service. Its housekeeping: raw originals of transcoded videos, and
abandoned uploads (with their videos), expire.
"""

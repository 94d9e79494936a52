"""The transcoder's jobs: one class per kind of work a transcode request asks for.

- base.py: what every job shares (worker context, scratch folder, source download, timed
  ladder encode, MediaError -> failed result).
- whole.py: WholeVideoJob, a first encode of the raw upload (or its split into chunk jobs).
- chunked.py: the split of a long video, and ChunkJob (encode one chunk; the last one in
  joins and packages them).
- upgrade.py: CodecUpgradeJob, new codec families for a READY video.
- outputs.py: the media bucket layout, storing an encode's files and its TranscodeResult.
- families.py: the configured codec families, validated.

worker.TranscodeJob picks the job for each request, publishes its result and fails the
video on bad input.
"""

"""The transcoder's jobs: one class (or function) per kind of work a transcode request asks for.

- base.py: what every job shares (worker context, scratch folder, source download, timed
  ladder encode, MediaError -> failed result).
- whole.py: WholeVideoJob, a first encode of the raw upload (or its split into chunk jobs).
- chunked.py: the split of a long video, and ChunkJob (encode one chunk; the last one in
  joins and packages them).
- upgrade.py: CodecUpgradeJob, new codec families for a READY video.
- downloads.py: DownloadsJob, a READY video's download files (progressive MP4, M4A)
  remuxed from its renditions, and the ones made for every video by config.
- audio_tracks.py: AudioTrackJob, an uploaded alternate audio track encoded for every
  codec family.
- captions.py: automatic_caption, the speech-to-text caption of a READY video.
- outputs.py: the media bucket layout, storing an encode's files and its TranscodeResult.
- families.py: the configured codec families, validated.

worker.TranscodeJob picks the job for each request, publishes its result and fails the
video on bad input.
"""

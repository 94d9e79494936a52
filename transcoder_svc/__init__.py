"""transcoder_svc: the transcoder fleet's worker.

Its one job: consume `transcode.requests`, probe and transcode the raw upload into the
adaptive ladder with ffmpeg, write every variant to the media bucket under
`videos/<id>/<codec>/<resolution>/...`, and publish a TranscodeResult on
`transcode.results`. Bad input ends the video FAILED with a reason; the raw upload is
kept. Any number of workers may run; a killed worker's job is redelivered to another.

- worker.py: the process (consumer, status RPC) and TranscodeJob, the request handler that
  hands each request to its job and publishes the result.
- jobs/: one class per kind of work: whole video, chunk (split and join), codec upgrade;
  plus the shared steps and the bucket layout of the outputs.
- probe.py: what a source is, and the limits it must fit.
- ladder.py: the rungs, their bitrates per codec family, and where chunk cuts fall.
- ffmpeg_graphs.py: every ffmpeg graph, built with ffmpeg-python, and the one run helper.
- packaging.py: HLS master playlists, DASH MPDs, storyboard cues.
- pertitle.py: per-title bitrates from measured VMAF.
- metrics.py: the encode-time metric.
"""

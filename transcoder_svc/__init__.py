"""transcoder_svc: the transcoder fleet's worker.

Its one job: consume `transcode.requests`, probe and transcode the raw upload into the
adaptive ladder with ffmpeg (media.py), write every variant to the media bucket under
`videos/<id>/<codec>/<resolution>/...`, and publish a TranscodeResult on
`transcode.results`. Bad input ends the video FAILED with a reason; the raw upload is
kept. Any number of workers may run; a killed worker's job is redelivered to another.

- worker.py: the process (consumer, status RPC) and TranscodeJob, the request handler that
  hands each request to its job and publishes the result.
- jobs/: one class per kind of work: whole video, chunk (split and join), codec upgrade;
  plus the shared steps and the bucket layout of the outputs.
- media.py: everything that runs ffmpeg; pertitle.py: per-title ladders from VMAF analysis.
- metrics.py: the encode-time metric.
"""

"""Hashes of everything the transcoder writes for one short clip: the proof that a reshape
of the ffmpeg layer leaves its output unchanged (issue 24).

Run from the repo root:
  taskset -c 0 .venv/bin/python bench/ladder_hashes.py [--clip PATH] [--families h264,vp9,av1]
                              [--out FILE] [--compare bench/results/ladder_hashes_before.json]

What it runs, all through the public functions the worker calls:
* `transcode`: the default ladder (`ladder_for`) of the clip in every family asked, with
  the storyboard and the poster;
* chunked: `chunk_plan` at 4 s, `encode_chunk` per chunk, `join_chunks` (H.264, two rungs);
* `remux_rendition` of the whole encode's top H.264 rendition;
* per-title: `make_sample` and `measure_ladder` (the sample encodes, VMAF at the rung size
  and at the display size) for the two lowest rungs, then `per_title_families` (the other
  families' sample encodes and scores) for them.
It prints and writes the sha256 and size of every output file, sorted by path, and the
per-title VMAF scores. x264 with frame threads and VBV is not byte-repeatable (the same
encode differs by up to 0.5 % run to run on 2 cores); on one core (`taskset -c 0`: x264
then runs one thread) every file repeats byte for byte (checked: two runs, `--compare`).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
import tempfile

import av

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transcoder_svc import ffmpeg_graphs, ladder, probe  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "media" / "friday_480p_h264_aac.mp4"  # 6.2 s, 640x480, stereo AAC


def run_all(clip: str, families: tuple[str, ...], work: pathlib.Path) -> dict:
    info = probe.probe(clip)
    rungs = ladder.ladder_for(info)
    ffmpeg_graphs.transcode(clip, str(work / "whole"), info, rungs, families, timeout_s=600)
    plan = ladder.chunk_plan(info.duration_s, chunk_seconds=4)
    chunks = [ffmpeg_graphs.encode_chunk(clip, str(work / "chunks" / str(k)), info, rungs[:2], ("h264",), start, length,
                                 timeout_s=600) for k, (start, length) in enumerate(plan)]
    ffmpeg_graphs.join_chunks(chunks, clip, str(work / "joined"), info, rungs[:2], ("h264",), timeout_s=600)
    top = rungs[-1].name
    (work / "remux").mkdir()
    ffmpeg_graphs.remux_rendition(str(work / "whole" / "h264" / top / "playlist.m3u8"),
                          str(work / "whole" / "h264" / "audio" / "playlist.m3u8") if info.has_audio else None,
                          str(work / "remux" / f"{top}.mp4"), timeout_s=600)
    sample_dir = work / "pertitle"
    sample_dir.mkdir()
    sample = str(sample_dir / "sample.mp4")
    length = pt.make_sample(clip, info, 1, 3.0, sample, 600)
    display = (rungs[-1].width, rungs[-1].height)
    scores = pt.measure_ladder(sample, length, [(r, r.video_bitrate_bps // 2) for r in rungs[:2]], str(sample_dir),
                               600, 2, display, fps=pt.sample_fps(info))
    scored = [dataclasses.replace(r, vmaf=round(q, 2)) for r, (_, q, _) in zip(rungs[:2], scores)]
    families_dir = work / "families"
    with_families = pt.per_title_families(clip, info, scored, ("h264", *families), samples=1, sample_seconds=3.0,
                                          workdir=str(families_dir), timeout_s=600)
    return {"sample_seconds": length,
            "measure_ladder": [{"rung": r.name, "bits": b, "vmaf": round(q, 4), "display_vmaf": round(d, 4)}
                               for r, (b, q, d) in zip(rungs[:2], scores)],
            "families": [{"rung": r.name, "bitrate": r.family_bitrate_bps, "vmaf": r.family_vmaf}
                         for r in with_families]}


def file_hashes(work: pathlib.Path) -> dict[str, dict]:
    out = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        if path.suffix == ".json":
            continue  # libvmaf's logs hold run times
        data = path.read_bytes()
        # Matroska writes a random SegmentUID: its packets are what the encoder made.
        digest = packets_sha256(path) if path.suffix == ".mkv" else hashlib.sha256(data).hexdigest()
        out[str(path.relative_to(work))] = {"sha256": digest, "bytes": len(data)}
    return out


def packets_sha256(path: pathlib.Path) -> str:
    """sha256 over every packet's data and timestamps."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for packet in container.demux():
            digest.update(f"{packet.stream.index} {packet.pts} {packet.dts} {packet.is_keyframe}\n".encode())
            digest.update(bytes(packet))
    return digest.hexdigest()


def compare(before: dict, after: dict) -> bool:
    same = True
    for name in sorted(set(before["files"]) | set(after["files"])):
        b, a = before["files"].get(name), after["files"].get(name)
        if b == a:
            continue
        same = False
        if not a or not b:
            print(f"MISSING {'after' if not a else 'before'}: {name}")
        else:
            print(f"DIFFERS {name}: {b['bytes']} -> {a['bytes']} bytes ({(a['bytes'] / b['bytes'] - 1) * 100:+.3f} %)")
    if before["pertitle"] != after["pertitle"]:
        same = False
        print(f"per-title scores differ:\n  before {before['pertitle']}\n  after  {after['pertitle']}")
    print("IDENTICAL" if same else "NOT IDENTICAL", f"({len(after['files'])} files)")
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--families", default="h264,vp9,av1")
    ap.add_argument("--out", help="write the hashes here (JSON)")
    ap.add_argument("--compare", help="a JSON written by an earlier run: print what differs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ladder-hashes-") as tmp:
        work = pathlib.Path(tmp)
        scores = run_all(args.clip, tuple(args.families.split(",")), work)
        result = {"clip": pathlib.Path(args.clip).name, "families": args.families, "pertitle": scores,
                  "files": file_hashes(work)}
    for name, h in result["files"].items():
        print(h["sha256"], f"{h['bytes']:>9}", name)
    print(json.dumps(result["pertitle"]))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        return 0 if compare(json.loads(pathlib.Path(args.compare).read_text()), result) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a benchmark records about the machine it ran on (the boxes are shared and noisy)."""
from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def ffmpeg_version() -> str:
    from transcoder_svc import ffmpeg_graphs

    out = subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else ""

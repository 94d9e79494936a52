// Seek-bar previews from the storyboard the transcoder makes: a tiled JPEG sprite and a
// WebVTT file whose cues say which tile (`storyboard.jpg#xywh=x,y,w,h`) covers which
// seconds. The browser's own WebVTT parser reads the cues: a hidden metadata <track> on
// the content element, which players (hls.js included) leave alone.
import { formatTime } from "./format.js";

const XYWH = /#xywh=(\d+),(\d+),(\d+),(\d+)$/;

// Resolves to the track's cues once loaded ([] when there is no storyboard or it fails).
export function loadStoryboard(video, vttUrl) {
  if (!vttUrl) return Promise.resolve([]);
  return new Promise((resolve) => {
    const el = document.createElement("track");
    el.kind = "metadata";
    el.label = "storyboard";
    el.src = vttUrl;
    el.addEventListener("load", () => resolve(Array.from(el.track.cues || [])), { once: true });
    el.addEventListener("error", () => resolve([]), { once: true });
    video.append(el);
    el.track.mode = "hidden"; // loads the cues without showing them
  });
}

// The tile covering time t: {x, y, w, h} in the sprite's pixels, or null.
export function tileAt(cues, t) {
  const cue = cues.find((c) => c.startTime <= t && t < c.endTime) || (cues.length && t >= cues[cues.length - 1].startTime ? cues[cues.length - 1] : null);
  const m = cue && XYWH.exec(cue.text.trim());
  return m ? { x: Number(m[1]), y: Number(m[2]), w: Number(m[3]), h: Number(m[4]) } : null;
}

// Shows the preview box above the seek bar at `fraction` of its width, for time t.
export function showPreview({ box, image, time, chapter }, spriteUrl, cues, t, fraction, chapterTitle) {
  const tile = spriteUrl ? tileAt(cues, t) : null;
  image.hidden = !tile;
  if (tile) {
    image.style.width = `${tile.w}px`;
    image.style.height = `${tile.h}px`;
    image.style.backgroundImage = `url("${spriteUrl}")`;
    image.style.backgroundPosition = `${-tile.x}px ${-tile.y}px`;
  }
  time.textContent = formatTime(t);
  chapter.textContent = chapterTitle || "";
  box.dataset.time = String(t);
  box.hidden = false;
  // Centred on the pointer, kept inside the bar.
  const barWidth = box.parentElement.clientWidth;
  const boxWidth = box.offsetWidth;
  const left = Math.min(Math.max(0, fraction * barWidth - boxWidth / 2), Math.max(0, barWidth - boxWidth));
  box.style.left = `${left}px`;
}

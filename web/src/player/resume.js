// Resume where the viewer left off: the position per video in localStorage. Not for the
// first seconds (that is starting over) nor near the end (that is finished: the entry is
// dropped), and forgotten after a while.
const PREFIX = "longtail:resume:";
export const RESUME_MIN_S = 5;
const END_MARGIN_S = 5;
const END_MARGIN_SHARE = 0.05;
const MAX_AGE_MS = 90 * 24 * 3600 * 1000;
const SAVE_EVERY_MS = 2000;

export function resumable(t, durationS) {
  const margin = Math.max(END_MARGIN_S, durationS * END_MARGIN_SHARE);
  return durationS > 0 && t >= RESUME_MIN_S && t <= durationS - margin;
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage blocked (privacy settings): no resume, nothing breaks
  }
}

// The position to start at, or null.
export function savedPosition(videoId, durationS) {
  const store = storage();
  if (!store) return null;
  try {
    const saved = JSON.parse(store.getItem(PREFIX + videoId) || "null");
    if (!saved || typeof saved.t !== "number" || Date.now() - saved.at > MAX_AGE_MS) return null;
    return resumable(saved.t, durationS) ? saved.t : null;
  } catch {
    return null;
  }
}

export function savePosition(videoId, t, durationS) {
  const store = storage();
  if (!store) return;
  try {
    if (resumable(t, durationS)) store.setItem(PREFIX + videoId, JSON.stringify({ t, at: Date.now() }));
    else store.removeItem(PREFIX + videoId);
  } catch {
    // a full storage loses the position, nothing more
  }
}

// Saves while it plays (at most every SAVE_EVERY_MS), on pause and seek, and as the page closes.
export function trackPosition(video, videoId, durationS, isContent) {
  let last = 0;
  const save = () => {
    if (isContent()) savePosition(videoId, video.currentTime, video.duration || durationS);
  };
  video.addEventListener("timeupdate", () => {
    if (Date.now() - last < SAVE_EVERY_MS) return;
    last = Date.now();
    save();
  });
  for (const event of ["pause", "seeked"]) video.addEventListener(event, save);
  video.addEventListener("ended", () => savePosition(videoId, 0, 0)); // finished: start over next time
  window.addEventListener("pagehide", save);
}

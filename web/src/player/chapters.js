// Chapters from the description, as YouTube reads them: lines that start with a timestamp
// ("0:00 Intro", "1:05 - The demo", "(12:30) Questions"), the first at 0:00, in increasing
// order, at least two. Shown as marks on the seek bar and as a list; both seek.
import { formatTime, parseTimestamp } from "./format.js";

const LINE = /^\s*[([]?((?:\d{1,2}:)?\d{1,2}:\d{2})[)\]]?\s*(?:[-–—:|·]\s*)?(\S.*?)\s*$/;
const MIN_CHAPTERS = 2;

export function parseChapters(description, durationS) {
  const chapters = [];
  for (const line of (description || "").split(/\r?\n/)) {
    const m = LINE.exec(line);
    const start = m ? parseTimestamp(m[1]) : null;
    if (start === null) continue;
    const previous = chapters[chapters.length - 1];
    // Out of order or past the end: not a chapter list, or a typo that would mislead.
    if ((previous && start <= previous.start) || (durationS > 0 && start >= durationS)) return [];
    chapters.push({ start, title: m[2] });
  }
  if (chapters.length < MIN_CHAPTERS || chapters[0].start !== 0) return [];
  return chapters.map((c, i) => ({ ...c, end: i + 1 < chapters.length ? chapters[i + 1].start : durationS }));
}

export function chapterAt(chapters, t) {
  let found = null;
  for (const c of chapters) if (c.start <= t) found = c;
  return found;
}

// The list under the player and the marks on the seek bar; `seek(t)` moves the player.
export function renderChapters(chapters, durationS, { list, marks, section }, seek) {
  list.replaceChildren();
  marks.replaceChildren();
  section.hidden = chapters.length === 0;
  chapters.forEach((c, i) => {
    const label = `Chapter ${i + 1}: ${c.title}, at ${formatTime(c.start)}`;
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chapter link";
    button.dataset.start = String(c.start);
    button.setAttribute("aria-label", label);
    const time = document.createElement("span");
    time.className = "chapter-time";
    time.textContent = formatTime(c.start);
    button.append(time, ` ${c.title}`);
    button.addEventListener("click", () => seek(c.start));
    item.append(button);
    list.append(item);
    if (c.start === 0 || !(durationS > 0)) return; // the first chapter starts where the bar does
    const mark = document.createElement("button");
    mark.type = "button";
    mark.className = "chapter-mark";
    mark.tabIndex = -1; // the list is the keyboard's way to the same place
    mark.dataset.start = String(c.start);
    mark.style.left = `${(100 * c.start) / durationS}%`;
    mark.setAttribute("aria-label", label);
    mark.title = `${formatTime(c.start)} ${c.title}`;
    mark.addEventListener("click", (e) => {
      e.stopPropagation();
      seek(c.start);
    });
    marks.append(mark);
  });
}

// Marks the chapter playing now in the list (aria-current) and returns it.
export function highlightChapter(chapters, t, list) {
  const current = chapterAt(chapters, t);
  for (const button of list.querySelectorAll("button.chapter")) {
    const on = current !== null && Number(button.dataset.start) === current.start;
    if (on) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
  return current;
}

// Around the player: the views count and "more from this channel" (the channel's public
// videos from the list API, newest first, this one left out).
import { getJson } from "../util.js";
import { formatTime } from "./format.js";

const MORE_COUNT = 8;

export async function showViews(videoId, el) {
  try {
    const { status, body } = await getJson(`/v1/videos/${encodeURIComponent(videoId)}/stats`);
    if (status !== 200 || typeof body.views !== "number") return;
    const n = body.views;
    el.textContent = `${new Intl.NumberFormat().format(n)} ${n === 1 ? "view" : "views"}`;
    el.hidden = false;
  } catch {
    // no count shown: the page works without it
  }
}

function moreCard(video) {
  const poster = (video.thumbnails || []).find((t) => t.kind === "poster");
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.videoId = video.id;
  const link = document.createElement("a");
  link.href = `/watch/${encodeURIComponent(video.id)}`;
  const image = poster ? document.createElement("img") : document.createElement("span");
  if (poster) {
    image.src = poster.url;
    image.alt = "";
    image.loading = "lazy";
  } else {
    image.className = "noposter";
  }
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = video.title;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = formatTime(video.duration_seconds);
  link.append(image, title, meta);
  item.append(link);
  return item;
}

export async function showMoreFromChannel(videoId, channelId, { section, list }) {
  if (!channelId) return [];
  try {
    const query = new URLSearchParams({ channel_id: channelId, page_size: String(MORE_COUNT + 1) });
    const { status, body } = await getJson(`/v1/videos?${query}`);
    if (status !== 200) return [];
    // The list answers public videos unless asked otherwise; the filter says so again.
    const videos = (body.videos || []).filter((v) => v.id !== videoId && v.privacy === "public").slice(0, MORE_COUNT);
    list.replaceChildren(...videos.map(moreCard));
    section.hidden = videos.length === 0;
    return videos.map((v) => v.id);
  } catch {
    return [];
  }
}

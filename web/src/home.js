// The home and search pages' cards: while a card is hovered (or its link focused), its
// video's short looping preview plays over the poster. The preview is fetched on the first
// hover only; a video without one (404) keeps its poster. Nothing moves for visitors who
// ask for reduced motion.

function attachPreview(card) {
  const link = card.querySelector("a");
  const poster = link && link.querySelector("img");
  if (!poster) return;  // no poster yet: nothing to lay the preview over
  let preview = null;
  let active = false;
  const show = () => {
    active = true;
    if (!preview) {
      preview = document.createElement("img");
      preview.className = "preview";
      preview.alt = "";
      preview.hidden = true;
      preview.addEventListener("load", () => { preview.hidden = !active; });
      preview.addEventListener("error", () => { preview.remove(); delete card.dataset.preview; });
      preview.src = card.dataset.preview;
      poster.after(preview);
    } else if (preview.complete && preview.naturalWidth) {
      preview.hidden = false;
    }
  };
  const hide = () => {
    active = false;
    if (preview) preview.hidden = true;
  };
  card.addEventListener("pointerenter", show);
  card.addEventListener("pointerleave", hide);
  card.addEventListener("focusin", show);
  card.addEventListener("focusout", hide);
}

if (!window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
  document.querySelectorAll(".card[data-preview]").forEach(attachPreview);
}

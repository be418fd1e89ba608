// tokenlife dashboard: copy buttons, local times, and a reload every 30 s while idle.
// Everything works without it; it only makes the page nicer to keep open.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      if (!field) return;
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (_) {
        document.execCommand("copy"); // older browsers, or no clipboard permission
      }
      button.textContent = "Copied";
    });
  }
  for (const time of document.querySelectorAll("time[datetime]")) {
    const date = new Date(time.getAttribute("datetime"));
    if (!Number.isNaN(date.getTime())) time.title = date.toLocaleString();
  }
  // Only the overview reloads, and not while the operator is typing or has a link open.
  if (document.getElementById("statuses")) {
    let touched = Date.now();
    for (const kind of ["keydown", "pointerdown", "focusin"]) {
      document.addEventListener(kind, () => { touched = Date.now(); });
    }
    setInterval(() => {
      if (Date.now() - touched > 30000 && document.visibilityState === "visible") {
        location.reload();
      }
    }, 30000);
  }
});

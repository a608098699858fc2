// A proposal under way (approved, executing) moves on with nobody acting: its page follows
// it and reloads itself once the status changes, so that it never says "Approved" about what
// has executed. Without JavaScript the page stays as it was loaded.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const follow = document.getElementById("follow-status");
  if (!follow) {
    return;
  }
  let delay = 500;
  const check = async () => {
    try {
      const response = await fetch(follow.dataset.url, { headers: { Accept: "application/json" } });
      if (!response.ok) {
        return; // gone, or no longer ours to see: stop following
      }
      const { status } = await response.json();
      if (status !== follow.dataset.status) {
        window.location.reload();
        return;
      }
    } catch (error) {
      if (error instanceof SyntaxError) {
        return; // not an answer about the proposal (logged out): stop following
      }
      // Out of reach for a moment: ask again.
    }
    delay = Math.min(delay * 1.25, 10000); // quickly at first, then at most every 10 s
    window.setTimeout(check, delay);
  };
  window.setTimeout(check, delay);
});

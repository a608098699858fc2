// A proposal under way (approved, executing) moves on with nobody acting: its page follows
// it, and once the status changes, or its attempts on its channel do (one failed, the next
// began), puts the page as it now reads (its #content) in place of the one shown, so that
// it never says "Approved" about what has executed, nor "attempt 2 is due" once attempt 2
// has failed. The messages above it stay: what the operator did ("… is approved and sent to
// be executed") is still said until they leave the page, with what has become of it since;
// a reload would have dropped them. Without JavaScript the page stays as it was loaded.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const following = () => document.getElementById("follow-status");
  if (!following()) {
    return;
  }

  // Where the console says what happened, above the page (made if nothing was said yet).
  const messageList = () => {
    let list = document.querySelector(".messagelist");
    if (!list) {
      list = document.createElement("ul");
      list.className = "messagelist";
      document.getElementById("content").before(list);
    }
    list.setAttribute("aria-live", "polite");
    return list;
  };

  // The page as it now reads, in place of the old one; false where the answer is not the
  // proposal's page (logged out, say): the caller reloads, and the browser shows why.
  const showAsItNowReads = async (url) => {
    const response = await fetch(url, { headers: { Accept: "text/html" } });
    if (!response.ok) {
      return false;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const content = page.getElementById("content");
    if (!content || !page.getElementById("proposal-status")) {
      return false;
    }
    document.getElementById("content").replaceWith(document.adoptNode(content));
    document.title = page.title;
    // Anything the console had to say since (the page just read took it) is said too.
    const told = page.querySelectorAll(".messagelist > li");
    if (told.length) {
      messageList().append(...Array.from(told, (line) => document.adoptNode(line)));
    }
    return true;
  };

  // What has become of the proposal, as the page now reads, in one line that each change
  // rewrites.
  const tellStatus = (proposal) => {
    const shown = document.getElementById("proposal-status");
    let line = document.getElementById("followed-status");
    if (!line) {
      line = document.createElement("li");
      line.id = "followed-status";
      messageList().append(line);
    }
    line.className = shown.dataset.status === "failed" ? "error" : "info";
    line.textContent = `Proposal #${proposal} ${shown.dataset.reached}.`; // "… has failed."
  };

  // Where following stops before the proposal is final, the page may be behind it: said,
  // rather than left showing a status that may have moved on.
  const tellStopped = (proposal, why) => {
    const line = document.createElement("li");
    line.id = "follow-stopped";
    line.className = "warning";
    line.textContent =
      `This page stopped following proposal #${proposal} (${why}): ` +
      "reload it to see where it stands.";
    messageList().append(line);
  };

  let delay = 500;
  const check = async () => {
    const follow = following();
    if (!follow) {
      return; // final: nothing more to follow
    }
    try {
      const response = await fetch(follow.dataset.url, { headers: { Accept: "application/json" } });
      if (!response.ok) {
        // Gone, or no longer ours to see: stop following, and say the page may be behind.
        tellStopped(follow.dataset.proposal, "it can no longer be read here");
        return;
      }
      const { status, attempts, last_attempt: lastAttempt } = await response.json();
      const was = follow.dataset.status;
      const newStatus = status !== was;
      // An attempt on its channel failed, or the next one began, while its status stayed
      // "Executing": the page said "attempt 2 is due at …" after attempt 2 had failed.
      const newAttempt =
        String(attempts) !== follow.dataset.attempts ||
        lastAttempt !== follow.dataset.lastAttempt;
      if (newStatus || newAttempt) {
        if (!(await showAsItNowReads(follow.dataset.page))) {
          window.location.reload();
          return;
        }
        // Said from the page just read, which may have moved on past the answer above: an
        // attempt ended and the proposal executed between the two reads, and the page read
        // "Executed" with nothing said of it.
        if (document.getElementById("proposal-status").dataset.status !== was) {
          tellStatus(follow.dataset.proposal);
        }
        delay = 500; // it moved: the next move may come soon
      }
    } catch (error) {
      if (error instanceof SyntaxError) {
        // Not an answer about the proposal (logged out, say): stop following, and say so.
        tellStopped(follow.dataset.proposal, "you may have been logged out");
        return;
      }
      // Out of reach for a moment: ask again.
    }
    delay = Math.min(delay * 1.25, 10000); // quickly at first, then at most every 10 s
    window.setTimeout(check, delay);
  };
  window.setTimeout(check, delay);
});

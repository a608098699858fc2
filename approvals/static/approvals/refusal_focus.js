// A refused act (a decision, an edit, a retry) brings its page back with the refusal: the
// focus goes to it, so that a screen reader reads it at once and the next Tab reaches the
// refused form's first field, rather than the focus starting again at the top of the page
// as if nothing had been said. The refused form's own error first; else the console's.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const refusal =
    document.querySelector("#proposal-review form .errorlist") ||
    document.querySelector(".messagelist .error");
  if (!refusal) {
    return;
  }
  refusal.setAttribute("tabindex", "-1");
  refusal.focus();
});

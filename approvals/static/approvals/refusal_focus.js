// A refused act (a decision, an edit, a retry) brings its page back with the refusal: the
// focus goes to it, so that a screen reader reads it at once and the next Tab reaches the
// refused form's first field, rather than the focus starting again at the top of the page
// as if nothing had been said. The refused form's own error first; else the console's; else,
// where the console said what an act did (a bulk decision's result), that.
//
// A refusal because the proposal moved on comes by a redirect to the proposal's page. One for
// what was typed (4xx) is the answer to the act's POST, at the act's address (…/4/approve/):
// the address bar is set to the proposal's page instead, so that a reload reads the page as
// it now is rather than offering to send the refused form again. What was typed stays on the
// page as it is: nothing is reloaded.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const review = document.getElementById("proposal-review");
  const page = review && review.dataset.page;
  if (page && window.location.pathname !== page) {
    window.history.replaceState(window.history.state, "", page);
  }
  // Else what the console said of an act done (a bulk decision's result on the queue, its
  // lines together): read out as the page opens, not left for a screen reader to come upon.
  const said =
    document.querySelector("#proposal-review form .errorlist") ||
    document.querySelector(".messagelist .error") ||
    document.querySelector(".messagelist");
  if (!said) {
    return;
  }
  said.setAttribute("tabindex", "-1");
  said.focus();
});

// Make the sidebar buttons work (pydata-sphinx-theme 0.17.1 with sphinx-book-theme 1.3.0).
//
// Both themes bind their sidebar handlers to document.querySelector(".primary-toggle") and
// (".secondary-toggle"): the first such button, which is a hidden one in the page header
// (pydata/pydata-sphinx-theme#2451). The buttons a reader sees get no handler, so the chapter
// list and the page contents never open on a phone, and the sidebar never collapses on a wide
// screen. This forwards a click on every other such button to the bound one, so the themes'
// own code does the work: a dialog on narrow screens, a collapsed sidebar on wide ones.
document.addEventListener("DOMContentLoaded", () => {
  for (const selector of [".primary-toggle", ".secondary-toggle"]) {
    const bound = document.querySelector(selector);
    for (const button of document.querySelectorAll(selector)) {
      if (button === bound) continue;
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        button.blur(); // or its tooltip stays over the header icons
        bound.click();
      });
    }
  }
});

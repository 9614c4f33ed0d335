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

// Boxes that scroll sideways (code, printed output, wide tables) say so. On a phone most code and
// many printed tables are wider than the screen, and a cut line looked like the end of the line.
// A shadow on the edge that hides more (right, or left once scrolled) marks it, and goes when
// the reader reaches that end. The shadows are two spans laid over the box's edges (in its
// parent, not in the box, so they stay put while the content scrolls under them).
function attnvizMarkScrollers() {
  const boxes = document.querySelectorAll(
    ".bd-article pre, .bd-article .pst-scrollable-table-container, .bd-article .output.text_html, .bd-article .attnviz-table-scroll",
  );
  for (const box of boxes) {
    const holder = box.parentElement;
    if (!box.attnvizEdges) {
      if (getComputedStyle(holder).position === "static") holder.style.position = "relative";
      box.attnvizEdges = ["left", "right"].map((side) => {
        const edge = document.createElement("span");
        edge.className = `attnviz-edge attnviz-edge-${side}`;
        edge.setAttribute("aria-hidden", "true");
        holder.append(edge);
        return edge;
      });
      box.addEventListener("scroll", () => attnvizPlaceEdges(box), { passive: true });
    }
    attnvizPlaceEdges(box);
  }
}

function attnvizPlaceEdges(box) {
  const [left, right] = box.attnvizEdges;
  const more = box.scrollWidth - box.clientWidth > 1;
  box.classList.toggle("attnviz-scrolls", more);
  for (const edge of [left, right]) {
    edge.style.top = `${box.offsetTop}px`;
    edge.style.height = `${box.offsetHeight}px`;
  }
  left.style.left = `${box.offsetLeft}px`;
  right.style.left = `${box.offsetLeft + box.offsetWidth - right.offsetWidth}px`;
  left.hidden = !(more && box.scrollLeft > 1);
  right.hidden = !(more && box.scrollLeft + box.clientWidth < box.scrollWidth - 1);
}

// A figure shrunk to fit a phone (text a third of its size, or less) opens at full size on a
// tap: a dialog that shows the picture at its own width and scrolls both ways. A button under
// the figure says so, and is reachable from the keyboard.
function attnvizZoomableFigures() {
  const zh = document.documentElement.lang.startsWith("zh");
  const words = zh
    ? { open: "点按放大", close: "关闭", title: "原尺寸图" }
    : { open: "Tap to enlarge", close: "Close", title: "Figure at full size" };
  let dialog = document.querySelector("dialog.attnviz-zoom");
  if (!dialog) {
    dialog = document.createElement("dialog");
    dialog.className = "attnviz-zoom";
    dialog.setAttribute("aria-label", words.title);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "attnviz-zoom-close";
    close.textContent = words.close;
    close.addEventListener("click", () => dialog.close());
    const body = document.createElement("div");
    body.className = "attnviz-zoom-body";
    dialog.append(close, body);
    // a tap on the backdrop (outside the dialog's box) closes it
    dialog.addEventListener("click", (event) => {
      const box = dialog.getBoundingClientRect();
      const inside =
        event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) dialog.close();
    });
    document.body.append(dialog);
  }
  const open = (img) => {
    const copy = document.createElement("img");
    copy.src = img.currentSrc || img.src;
    copy.alt = img.alt;
    copy.width = img.naturalWidth;
    dialog.querySelector(".attnviz-zoom-body").replaceChildren(copy);
    dialog.showModal();
  };
  for (const img of document.querySelectorAll(".bd-article .cell_output img")) {
    const check = () => {
      const shown = img.getBoundingClientRect().width;
      const small = shown > 0 && img.naturalWidth > 1.25 * shown;
      let button = img.nextElementSibling;
      if (!button || !button.classList.contains("attnviz-zoom-open")) button = null;
      img.classList.toggle("attnviz-zoomable", small);
      if (small && !button) {
        button = document.createElement("button");
        button.type = "button";
        button.className = "attnviz-zoom-open";
        button.textContent = words.open;
        button.addEventListener("click", () => open(img));
        img.after(button);
      }
      if (button) button.hidden = !small;
    };
    if (!img.dataset.attnvizZoom) {
      img.dataset.attnvizZoom = "1";
      img.addEventListener("click", () => img.classList.contains("attnviz-zoomable") && open(img));
      if (!img.complete) img.addEventListener("load", check);
    }
    check();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  attnvizMarkScrollers();
  attnvizZoomableFigures();
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      attnvizMarkScrollers();
      attnvizZoomableFigures();
    }, 100);
  });
  // MathJax and web fonts change widths after DOMContentLoaded
  window.addEventListener("load", attnvizMarkScrollers);
});

// Typesets the equations of the documentation with the vendored KaTeX (docs/vendor/katex).
//
// pymdownx.arithmatex (generic mode, see mkdocs.yml) leaves every equation of a page as its TeX
// source inside <div class="arithmatex">\[ ... \]</div> (display) or <span class="arithmatex">
// \( ... \)</span> (inline); without JavaScript the reader sees that source. A numbered equation
// carries \tag{G3}, and the page has an anchor <div id="eq-G3"> just before it; the label drawn
// at the right of the equation, "(G3)", is made a link to that anchor, so it can be copied and cited.
(function () {
  "use strict";

  function anchorId(label) {
    return "eq-" + label.replace(/'/g, "-prime");
  }

  function render(element) {
    var tex = element.textContent.trim();
    var display = element.tagName === "DIV";
    tex = tex.replace(/^\\[\[(]/, "").replace(/\\[\])]$/, "");
    tex = tex.replace(/\\tag\{([^{}]*)\}/g, function (_, label) {
      return "\\tag*{\\href{#" + anchorId(label) + "}{(" + label + ")}}";
    });
    katex.render(tex, element, {
      displayMode: display,
      throwOnError: false,          // a TeX error shows the source in red instead of a blank page
      trust: function (context) {   // links only to anchors of this page
        return context.command === "\\href" && context.url.charAt(0) === "#";
      },
    });
  }

  // KaTeX puts a label at the right edge over whatever is there: where an equation is too wide
  // for the column (a narrow window), the label follows the equation instead (math.css).
  function placeLabels() {
    var displays = document.querySelectorAll(".katex-display");
    for (var i = 0; i < displays.length; i++) {
      var display = displays[i], tag = display.querySelector(".katex-tag");
      if (!tag) continue;
      display.classList.remove("eq-label-after");
      var right = 0, parts = display.querySelectorAll(".katex-base");
      for (var j = 0; j < parts.length; j++) {
        right = Math.max(right, parts[j].getBoundingClientRect().right);
      }
      if (tag.getBoundingClientRect().left < right) display.classList.add("eq-label-after");
    }
  }

  function renderAll() {
    var elements = document.querySelectorAll(".arithmatex");
    for (var i = 0; i < elements.length; i++) {
      render(elements[i]);
    }
    placeLabels();
    window.addEventListener("resize", placeLabels);
    if (document.fonts) document.fonts.ready.then(placeLabels);  // widths change once the fonts load
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderAll);
  } else {
    renderAll();
  }
})();

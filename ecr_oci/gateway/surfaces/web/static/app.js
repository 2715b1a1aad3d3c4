// Progressive enhancement only: every page works without this file.
// Adds a "Copy" button to each command block.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const pre of document.querySelectorAll("pre.cmd")) {
    if (!navigator.clipboard) { break; }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy: " + (pre.previousElementSibling ? pre.previousElementSibling.textContent : "command"));
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(pre.textContent).then(() => {
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = "Copy"; }, 1500);
      });
    });
    pre.after(button);
  }
});

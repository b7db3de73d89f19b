// Niceties only: every page works without this script.
document.addEventListener("DOMContentLoaded", () => {
  // re-sort as soon as a sort control changes
  const sortForm = document.getElementById("sort-form");
  if (sortForm) {
    for (const id of ["sortBy", "sortOrder"]) {
      const control = document.getElementById(id);
      if (control) control.addEventListener("change", () => sortForm.submit());
    }
  }
  // copy buttons, shown only where the clipboard can be written
  for (const button of document.querySelectorAll("button[data-copy]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      await navigator.clipboard.writeText(input.value);
      button.textContent = "Copied";
    });
  }
});

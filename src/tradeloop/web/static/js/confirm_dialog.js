// The confirmation dialog of the signal, position and webhook endpoint pages: a native
// <dialog> (focus moves into it, Escape cancels, focus returns afterwards), filled per action.

/** Ask `text` in the page's #confirm-dialog; resolves true when the user confirms. */
export function confirmAction(text, confirmLabel = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("[data-confirm-text]").textContent = text;
  dialog.querySelector("[data-confirm-button]").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"),
                            { once: true });
  });
}

/** The header that lets a state-changing fetch through tradeloop's CSRF check. */
export function csrfHeaders() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? { "X-CSRF-Token": meta.content } : {};
}

// Settings → webhook endpoints: copy buttons (URL, secret, TradingView message) and the
// confirmation of rotate and delete.
import { confirmAction } from "/static/js/confirm_dialog.js";

function announce(button, text) {
  const status = button.closest("section").querySelector("[data-copy-status]");
  if (status) status.textContent = text;
}

async function copy(button) {
  const source = document.getElementById(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(source.value);
    const what = button.textContent.replace(/^Copy /, "");
    announce(button, `${what.charAt(0).toUpperCase()}${what.slice(1)} copied to the clipboard.`);
  } catch {
    // No clipboard permission (or an insecure origin): select it for Ctrl+C instead.
    source.select();
    announce(button, "Copying was refused by the browser: the text is selected, press Ctrl+C.");
  }
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", () => copy(button));
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", async (event) => {
    if (form.dataset.confirmed === "yes") return;
    event.preventDefault();
    if (await confirmAction(form.dataset.confirm, form.dataset.confirmLabel)) {
      form.dataset.confirmed = "yes";
      form.requestSubmit();
    }
  });
}

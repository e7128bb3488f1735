// Positions page: "Close" asks for confirmation, then posts to the close endpoint of the API
// (POST /api/v1/positions/{id}/close) with the price typed, if any.
import { confirmAction, csrfHeaders } from "/static/js/confirm_dialog.js";

const statusLine = document.getElementById("close-status");

function problem(answer, status) {
  const error = answer && answer.error;
  if (!error) return `Closing failed (HTTP ${status}).`;
  const fields = (error.details && error.details.fields) || [];
  return [error.message, ...fields.map((field) => `${field.field}: ${field.message}`)].join(" — ");
}

async function closePosition(form) {
  const price = form.elements.price.value.trim();
  const what = `${form.dataset.side} ${form.dataset.quantity} ${form.dataset.symbol}`;
  const at = price ? `at ${price}` : "at the latest stored close";
  if (!(await confirmAction(`Close ${what} ${at}?`, "Close position"))) return;
  statusLine.textContent = `Closing ${form.dataset.symbol}…`;
  const response = await fetch(`/api/v1/positions/${form.dataset.position}/close`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...csrfHeaders() },
    body: JSON.stringify(price ? { price } : {}),
  });
  if (response.ok) {
    statusLine.textContent = `${form.dataset.symbol} closed.`;
    window.location.reload();
    return;
  }
  const answer = await response.json().catch(() => null);
  statusLine.textContent = problem(answer, response.status);
  form.elements.price.focus();
}

for (const form of document.querySelectorAll("form.close-form")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    closePosition(form);
  });
}

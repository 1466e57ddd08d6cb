// Admin page: shows the server status. The access token, when the server needs one, is kept in
// sessionStorage for this browser tab only.
"use strict";
const tokenKey = "wa-mcp-token";
document.getElementById("endpoint").textContent = location.origin + "/mcp";

function headers() {
  const t = sessionStorage.getItem(tokenKey);
  return t ? { Authorization: "Bearer " + t } : {};
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const res = await fetch("/api/status", { headers: headers() });
    if (res.status === 401) {
      document.getElementById("token-box").hidden = false;
      document.getElementById("state").textContent = "access token needed";
      return;
    }
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
    err.hidden = true;
    document.getElementById("state").textContent = body.state;
    await refreshSendLog();
  } catch (e) {
    err.textContent = "Could not load the status: " + e.message;
    err.hidden = false;
  }
}

// The newest send attempts (GET /api/send-log), allowed or refused. Texts go in through
// textContent only, so nothing a recipient name holds is ever parsed as HTML.
async function refreshSendLog() {
  const res = await fetch("/api/send-log?limit=50", { headers: headers() });
  if (!res.ok) return;
  const entries = (await res.json()).entries || [];
  const table = document.getElementById("send-log");
  const rows = entries.map((e) => {
    const tr = document.createElement("tr");
    const cells = [new Date(e.timestamp).toLocaleString(), e.tool, e.recipient, String(e.bytes), e.result];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    if (/^(refused|error)/.test(e.result)) tr.className = "refused";
    return tr;
  });
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
  document.getElementById("send-log-empty").hidden = rows.length !== 0;
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, document.getElementById("token").value.trim());
  document.getElementById("token-box").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, 5000);

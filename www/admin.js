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
  } catch (e) {
    err.textContent = "Could not load the status: " + e.message;
    err.hidden = false;
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, document.getElementById("token").value.trim());
  document.getElementById("token-box").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, 5000);

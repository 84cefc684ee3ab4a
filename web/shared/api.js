// Calls to this gateway only (same origin; the Content-Security-Policy allows nothing else).
// Writes carry the session's CSRF token; errors are RFC 9457 problems, shown by their detail.

let csrfToken = null;

export function setCsrf(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 204) return null;
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A text node builder: everything shown is set as text, never as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function say(target, text, kind = "") {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  node.className = `status ${kind}`;
  node.textContent = text;
}

export function table(headers, rows, caption) {
  // A wide table scrolls inside its own box on a phone instead of widening the page.
  return el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption || headers.join(", ") }, el(
    "table",
    {},
    caption ? el("caption", { class: "muted" }, caption) : null,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  ));
}

export function short(hex, n = 10) {
  return hex && hex.length > n + 4 ? `${hex.slice(0, n)}…${hex.slice(-4)}` : hex ?? "";
}

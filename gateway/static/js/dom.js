// Small DOM helpers. Text reaches the page only through text nodes and textContent, never as
// parsed markup: message bodies, names and titles are written by other users.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export const $ = (id) => document.getElementById(id);

const sameDay = (a, b) => a.toDateString() === b.toDateString();

// "14:05" today, "3 Mar 14:05" before; in the reader's locale and time zone.
export function shortTime(iso, now = new Date()) {
  if (!iso) return "";
  const t = new Date(iso);
  const time = t.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return sameDay(t, now) ? time : `${t.toLocaleDateString([], {day: "numeric", month: "short"})} ${time}`;
}

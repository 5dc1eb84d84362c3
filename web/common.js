// Shared by the dashboard pages. Everything a job or guest supplies is put on the page with
// textContent (never innerHTML): a guest can print <script>, and it must show as text.
'use strict';
/* exported el, fmtSeconds, fmtBytes, getJson, since */

/** Make an element with text content and optional attributes / children. */
function el(tag, text, attrs, children) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children || []) e.appendChild(c);
  return e;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${Math.round(s * 10) / 10}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']; let i = 0; let x = n;
  while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${n} B` : `${x < 10 ? x.toFixed(1) : Math.round(x)} ${u[i]}`;
}

function since(iso) {
  if (!iso) return '–';
  return `${fmtSeconds((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

async function getJson(url) {
  const r = await fetch(url, { headers: { accept: 'application/json' } });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

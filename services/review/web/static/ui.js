// Small pieces every page uses: status badges, error boxes, key/value tables, the page title.

import { html, useEffect } from './vendor/htm-preact-standalone.mjs';
import { Scalar } from './jsontree.js';
import { formatDateTime, parseTime } from './time.js';

const KNOWN_STATUSES = new Set(['PENDING', 'APPROVED', 'REJECTED', 'EDITED', 'RESPONDED', 'EXPIRED', 'CANCELLED']);

// The status as text (never colour alone); `testid` marks the approval page's badge.
export function StatusBadge({ status, testid }) {
  const s = String(status || 'UNKNOWN').replace(/^APPROVAL_STATUS_/, '');
  const cls = KNOWN_STATUSES.has(s) ? `badge badge-${s.toLowerCase()}` : 'badge';
  return html`<span class=${cls} data-testid=${testid}>${s}</span>`;
}

// An ApiError (or any error) as a readable alert, with its gRPC status and code for support.
export function ErrorBox({ error, title = 'Something went wrong' }) {
  if (!error) return null;
  const detail = [error.status, error.code].filter(Boolean).join(' · ');
  return html`<div class="error-box" role="alert">
    <p><strong>${title}:</strong> ${error.message || String(error)}</p>
    ${detail && html`<p class="muted small">${detail}</p>`}
  </div>`;
}

// A <table> of name/value rows. Values are rendered as given (text or markup); rows whose
// value is undefined, null or '' are left out. Use jsonCode() for data objects.
export function KeyValueTable({ rows, caption }) {
  const present = rows.filter(([, v]) => v !== undefined && v !== null && v !== '' && v !== false);
  if (!present.length) return null;
  return html`<table class="kv">
    ${caption && html`<caption>${caption}</caption>`}
    <tbody>
      ${present.map(([k, v]) => html`<tr key=${k}>
        <th scope="row">${k}</th>
        <td>${v}</td>
      </tr>`)}
    </tbody>
  </table>`;
}

// A data value as compact JSON text, for a table cell.
export function jsonCode(value) {
  return html`<code class="wrap">${JSON.stringify(value)}</code>`;
}

// Each scalar field of a record (nested records flattened as "a.b"), for server records
// whose exact fields we do not rely on (the Run).
export function flatten(record, prefix = '') {
  const rows = [];
  if (!record || typeof record !== 'object') return rows;
  for (const [k, v] of Object.entries(record)) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) rows.push(...flatten(v, name));
    else if (Array.isArray(v)) {
      if (v.length) rows.push([name, jsonCode(v)]);
    } else if (typeof v === 'string') {
      // Timestamps (created_at, started_at...) in the page's local, readable form.
      if (v) rows.push([name, /_at$/.test(k) && !Number.isNaN(parseTime(v)) ? html`<time datetime=${v}>${formatDateTime(v)}</time>` : v]);
    } else if (v !== null && v !== undefined) rows.push([name, html`<${Scalar} value=${v} />`]);
  }
  return rows;
}

export function usePageTitle(title) {
  useEffect(() => {
    document.title = title ? `${title} · graphmesh review` : 'graphmesh review';
  }, [title]);
}

// The page's <h1>, focusable so that the shell can move focus to it after a navigation.
export function PageHeading({ children }) {
  return html`<h1 tabindex="-1" class="page-heading">${children}</h1>`;
}

// Single-key shortcuts apply only when the reviewer is not typing in a field, no modifier
// (other than Shift, for "?") is held, and no dialog is open (a key must not act on the page
// behind it) unless `inDialog` allows it.
export function shortcutAllowed(event, { inDialog = false } = {}) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return false;
  const target = event.target;
  if (target instanceof Element && target.closest('input, textarea, select, [contenteditable]:not([contenteditable="false"])')) {
    return false;
  }
  if (!inDialog && document.querySelector('dialog[open]')) return false;
  return true;
}

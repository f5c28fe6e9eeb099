// A readable, collapsible view of any JSON value: objects and arrays are nested
// <details>/<summary> lists (keyboard- and screen-reader-friendly without any script),
// scalars are styled by type. Everything is rendered as text, never as HTML.

import { html, useState } from './vendor/htm-preact-standalone.mjs';

// Children shown per object/array before a "show all" button, so a huge payload stays fast.
const CHILD_LIMIT = 200;

function kindOf(value) {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value; // object, string, number, boolean
}

export function Scalar({ value }) {
  const kind = kindOf(value);
  if (kind === 'null') return html`<span class="j-null">null</span>`;
  if (kind === 'string') return html`<span class="j-str">${value}</span>`;
  if (kind === 'number') return html`<span class="j-num">${String(value)}</span>`;
  if (kind === 'boolean') return html`<span class="j-bool">${String(value)}</span>`;
  return html`<span class="j-other">${String(value)}</span>`;
}

function entriesOf(value) {
  return Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
}

function sizeText(value) {
  const n = Array.isArray(value) ? value.length : Object.keys(value).length;
  if (Array.isArray(value)) return `[${n} item${n === 1 ? '' : 's'}]`;
  return `{${n} key${n === 1 ? '' : 's'}}`;
}

function Children({ value, depth, openDepth }) {
  const [all, setAll] = useState(false);
  const entries = entriesOf(value);
  const shown = all ? entries : entries.slice(0, CHILD_LIMIT);
  return html`
    <ul class="json">
      ${shown.map(([key, child]) => html`
        <li key=${key}><${Node} name=${key} value=${child} depth=${depth + 1} openDepth=${openDepth} /></li>`)}
      ${entries.length > shown.length && html`
        <li><button type="button" class="link" onClick=${() => setAll(true)}>
          Show all ${entries.length} (${entries.length - shown.length} more)
        </button></li>`}
    </ul>`;
}

function Node({ name, value, depth, openDepth }) {
  const kind = kindOf(value);
  const key = name === undefined ? null : html`<span class="j-key">${name}</span>: `;
  if (kind !== 'object' && kind !== 'array') return html`${key}<${Scalar} value=${value} />`;
  if (!entriesOf(value).length) return html`${key}<span class="j-empty">${kind === 'array' ? '[]' : '{}'}</span>`;
  return html`
    <details open=${depth < openDepth}>
      <summary>${key}<span class="j-size">${sizeText(value)}</span></summary>
      <${Children} value=${value} depth=${depth} openDepth=${openDepth} />
    </details>`;
}

// `openDepth`: how many levels start expanded. A top-level object or array is listed
// directly (its own summary line would add nothing); `label` names the tree for assistive
// technology.
export function JsonTree({ value, openDepth = 2, label = 'JSON value' }) {
  const kind = kindOf(value);
  if ((kind === 'object' || kind === 'array') && entriesOf(value).length) {
    return html`<div class="json-tree" role="group" aria-label=${label}>
      <${Children} value=${value} depth=${0} openDepth=${openDepth} />
    </div>`;
  }
  return html`<div class="json-tree" role="group" aria-label=${label}><${Node} value=${value} depth=${0} openDepth=${openDepth} /></div>`;
}

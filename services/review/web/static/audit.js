// Audit (/audit): the audit trail (requests, decisions, expiries, cancellations), newest
// first, filtered by the address's query (see listing.js), paged through /api/audit.

import { html } from './vendor/htm-preact-standalone.mjs';
import { api, query } from './api.js';
import { JsonTree } from './jsontree.js';
import { FilterForm, PagedFooter, usePaged } from './listing.js';
import { paths } from './router.js';
import { formatDateTime, localInputToIso } from './time.js';
import { PageHeading, usePageTitle } from './ui.js';

const FIELDS = [
  { name: 'run_id', label: 'Run id' },
  { name: 'thread_id', label: 'Thread id' },
  { name: 'approval_id', label: 'Approval id' },
  { name: 'actor', label: 'Actor (reviewer)' },
  { name: 'from', label: 'From', type: 'datetime-local' },
  { name: 'to', label: 'Before', type: 'datetime-local' },
];

function Details({ value, id }) {
  const keys = value && typeof value === 'object' ? Object.keys(value).length : 0;
  if (!keys) return html`<span class="muted">—</span>`;
  return html`<details>
    <summary>${keys} field${keys === 1 ? '' : 's'}<span class="visually-hidden"> of record ${id}</span></summary>
    <${JsonTree} value=${value} openDepth=${1} label=${`Details of record ${id}`} />
  </details>`;
}

export function AuditPage({ params }) {
  usePageTitle('Audit');
  const key = params.toString();
  const list = usePaged(async (pageToken, signal) => {
    const q = query({
      run_id: params.get('run_id'),
      thread_id: params.get('thread_id'),
      approval_id: params.get('approval_id'),
      actor: params.get('actor'),
      after: localInputToIso(params.get('from')),
      before: localInputToIso(params.get('to')),
      page_size: 50,
      page_token: pageToken,
    });
    const r = await api(`/api/audit${q}`, { signal });
    return { items: Array.isArray(r && r.records) ? r.records : [], next: (r && r.next_page_token) || '' };
  }, key);

  return html`
    <${PageHeading}>Audit trail</${PageHeading}>
    <p class="muted">Every approval request, decision, expiry and cancellation, newest first.</p>
    <${FilterForm} key=${key} fields=${FIELDS} params=${params} basePath="/audit" label="Filter the audit trail" />
    ${list.items.length > 0 && html`<div class="table-scroll cards">
      <table class="list">
        <caption class="visually-hidden">Audit records, newest first</caption>
        <thead><tr>
          <th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th>
          <th scope="col">Approval</th><th scope="col">Run</th><th scope="col">Details</th>
        </tr></thead>
        <tbody>${list.items.map((r, i) => html`<tr key=${r.record_id || i} data-testid="audit-row">
          <td data-label="Time"><time datetime=${r.time || ''}>${formatDateTime(r.time)}</time></td>
          <td data-label="Actor">${r.actor}</td>
          <td data-label="Action">${r.action}</td>
          <td data-label="Approval">${r.approval_id ? html`<a href=${paths.approval(r.approval_id)}><code>${r.approval_id}</code></a>` : html`<span class="muted">—</span>`}</td>
          <td data-label="Run">${r.run_id ? html`<a href=${paths.trace(r.run_id)} title="Trace of this run"><code>${r.run_id}</code></a>` : html`<span class="muted">—</span>`}</td>
          <td data-label="Details"><${Details} value=${r.details} id=${r.record_id || i} /></td>
        </tr>`)}</tbody>
      </table>
    </div>`}
    ${!list.loading && !list.error && list.items.length === 0 && html`<p class="empty">No audit records match these filters.</p>`}
    <${PagedFooter} list=${list} noun="records" />`;
}

// History (/history): decided, expired and cancelled approvals, newest first, filtered by the
// address's query (see listing.js), paged through /api/approvals.

import { html } from './vendor/htm-preact-standalone.mjs';
import { api, query } from './api.js';
import { useGraphNames } from './graphs.js';
import { FilterForm, PagedFooter, usePaged } from './listing.js';
import { paths } from './router.js';
import { formatDateTime, localInputToIso } from './time.js';
import { PageHeading, StatusBadge, usePageTitle } from './ui.js';

export const CLOSED_STATUSES = ['APPROVED', 'REJECTED', 'EDITED', 'RESPONDED', 'EXPIRED', 'CANCELLED'];

export function HistoryPage({ params }) {
  usePageTitle('History');
  const graphs = useGraphNames();
  const key = params.toString();
  const status = params.get('status');
  const list = usePaged(async (pageToken, signal) => {
    const q = query({
      status: status && CLOSED_STATUSES.includes(status) ? [status] : CLOSED_STATUSES,
      graph: params.get('graph'),
      run_id: params.get('run_id'),
      thread_id: params.get('thread_id'),
      reviewer: params.get('reviewer'),
      created_after: localInputToIso(params.get('from')),
      created_before: localInputToIso(params.get('to')),
      page_size: 50,
      page_token: pageToken,
    });
    const r = await api(`/api/approvals${q}`, { signal });
    return { items: Array.isArray(r && r.approvals) ? r.approvals : [], next: (r && r.next_page_token) || '' };
  }, key);

  const fields = [
    { name: 'status', label: 'Status', type: 'select', options: [['', 'all closed'], ...CLOSED_STATUSES.map((s) => [s, s.toLowerCase()])] },
    { name: 'graph', label: 'Graph', type: 'select', options: [['', 'all'], ...graphs.map((g) => [g, g])] },
    { name: 'run_id', label: 'Run id' },
    { name: 'thread_id', label: 'Thread id' },
    { name: 'reviewer', label: 'Reviewer' },
    { name: 'from', label: 'Created from', type: 'datetime-local' },
    { name: 'to', label: 'Created before', type: 'datetime-local' },
  ];

  return html`
    <${PageHeading}>History</${PageHeading}>
    <p class="muted">Approvals that were decided, expired or cancelled, newest first.</p>
    <${FilterForm} key=${key + graphs.length} fields=${fields} params=${params} basePath="/history" label="Filter the history" />
    ${list.items.length > 0 && html`<div class="table-scroll cards">
      <table class="list">
        <caption class="visually-hidden">Closed approvals, newest first</caption>
        <thead><tr>
          <th scope="col">Status</th><th scope="col">Graph</th><th scope="col">Node</th>
          <th scope="col">Reviewer</th><th scope="col">Decided at</th><th scope="col">Decision</th>
          <th scope="col">Comment</th><th scope="col"><span class="visually-hidden">Link</span></th>
        </tr></thead>
        <tbody>${list.items.map((a) => {
          const d = a.decision || {};
          return html`<tr key=${a.approval_id} data-testid="history-row" data-approval-id=${a.approval_id}>
            <td data-label="Status"><${StatusBadge} status=${a.status} /></td>
            <td data-label="Graph">${a.graph}${a.graph_version && html`<span class="muted">@${a.graph_version}</span>`}</td>
            <td data-label="Node">${a.node}</td>
            <td data-label="Reviewer">${d.reviewer || html`<span class="muted">—</span>`}</td>
            <td data-label="Decided at">${d.decided_at ? formatDateTime(d.decided_at) : html`<span class="muted">—</span>`}</td>
            <td data-label="Decision">${d.kind ? String(d.kind).replace(/^DECISION_KIND_/, '') : html`<span class="muted">—</span>`}</td>
            <td data-label="Comment" class="prewrap">${d.comment || ''}</td>
            <td data-label=""><a href=${paths.approval(a.approval_id)}>Open<span class="visually-hidden"> approval ${a.approval_id}</span></a></td>
          </tr>`;
        })}</tbody>
      </table>
    </div>`}
    ${!list.loading && !list.error && list.items.length === 0 && html`<p class="empty">No closed approvals match these filters.</p>`}
    <${PagedFooter} list=${list} noun="approvals" />`;
}

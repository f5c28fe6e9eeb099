// The queue (/): pending approvals, newest first, from the watch's snapshot and live events.
// Filtering is done here, over the whole snapshot; at most `limit` rows are rendered so that
// thousands of pending approvals stay fast.

import { html, useMemo, useState } from './vendor/htm-preact-standalone.mjs';
import { useGraphNames } from './graphs.js';
import { summarize } from './payload.js';
import { AGES, NO_ROLE, filteredPending, pendingNewestFirst, setQueueFilters, usePending } from './pending.js';
import { paths } from './router.js';
import { Countdown, RelTime, useNow } from './time.js';
import { PageHeading, usePageTitle } from './ui.js';

const PAGE = 200;

function Filters({ filters, graphs, roles }) {
  return html`<form class="filters" role="search" aria-label="Filter the queue" onSubmit=${(e) => e.preventDefault()}>
    <div class="field">
      <label for="q-graph">Graph</label>
      <select id="q-graph" value=${filters.graph} onChange=${(e) => setQueueFilters({ graph: e.currentTarget.value })}>
        <option value="">all</option>
        ${graphs.map((g) => html`<option key=${g} value=${g}>${g}</option>`)}
      </select>
    </div>
    <div class="field">
      <label for="q-role">Required role</label>
      <select id="q-role" value=${filters.role} onChange=${(e) => setQueueFilters({ role: e.currentTarget.value })}>
        <option value="">any</option>
        <option value=${NO_ROLE}>none (any reviewer)</option>
        ${roles.map((r) => html`<option key=${r} value=${r}>${r}</option>`)}
      </select>
    </div>
    <div class="field">
      <label for="q-age">Age</label>
      <select id="q-age" value=${filters.age} onChange=${(e) => setQueueFilters({ age: e.currentTarget.value })}>
        ${AGES.map((a) => html`<option key=${a.value} value=${a.value}>${a.label}</option>`)}
      </select>
    </div>
  </form>`;
}

function Row({ a }) {
  const summary = summarize(a.payload);
  return html`<tr data-testid="approval-row" data-approval-id=${a.approval_id}>
    <td data-label="Graph"><span class="nowrap">${a.graph}</span>${a.graph_version && html`<span class="muted">@${a.graph_version}</span>`}</td>
    <td data-label="Node">${a.node}</td>
    <td data-label="Request" class="summary">${summary}</td>
    <td data-label="Role">${a.required_role || html`<span class="muted">any</span>`}</td>
    <td data-label="Created"><${RelTime} iso=${a.created_at} /></td>
    <td data-label="Expiry"><${Countdown} expiresAt=${a.expires_at} /></td>
    <td data-label="">
      <a href=${paths.approval(a.approval_id)} class="row-link">Review<span class="visually-hidden">: ${a.graph} ${a.node}, ${summary}</span></a>
    </td>
  </tr>`;
}

export function QueuePage() {
  usePageTitle('Queue');
  const store = usePending();
  const graphNames = useGraphNames();
  const [limit, setLimit] = useState(PAGE);
  const filters = store.filters;
  // The age filter moves with the clock; without it nothing needs a tick.
  const now = useNow(filters.age !== 'any' ? 15000 : 0);

  const all = pendingNewestFirst();
  const rows = useMemo(() => filteredPending(now), [store.version, now]);
  const graphs = useMemo(() => [...new Set([...graphNames, ...all.map((a) => a.graph).filter(Boolean)])].sort(), [graphNames, store.version]);
  const roles = useMemo(() => [...new Set(all.map((a) => a.required_role).filter(Boolean))].sort(), [store.version]);
  const shown = rows.slice(0, limit);
  const filtered = rows.length !== all.length;

  return html`
    <${PageHeading}>Pending approvals</${PageHeading}>
    <${Filters} filters=${filters} graphs=${graphs} roles=${roles} />
    ${!store.ready
      ? html`<p class="muted" role="status">${store.conn === 'error' ? store.connMessage || 'The queue is not available.' : 'Loading the queue…'}</p>`
      : html`
        <p class="muted" data-testid="queue-count">
          ${filtered ? `${rows.length} of ${all.length} pending match the filters` : `${all.length} pending`}
          ${rows.length > shown.length ? ` · showing the newest ${shown.length}` : ''}
        </p>
        ${rows.length === 0
          ? html`<p class="empty" data-testid="queue-empty">${all.length ? 'No pending approval matches these filters.' : 'No approvals are waiting. New requests appear here as they arrive.'}</p>`
          : html`<div class="table-scroll cards">
              <table class="list">
                <caption class="visually-hidden">Pending approvals, newest first</caption>
                <thead><tr>
                  <th scope="col">Graph</th><th scope="col">Node</th><th scope="col">Request</th>
                  <th scope="col">Role</th><th scope="col">Created</th><th scope="col">Expiry</th>
                  <th scope="col"><span class="visually-hidden">Link</span></th>
                </tr></thead>
                <tbody>${shown.map((a) => html`<${Row} key=${a.approval_id} a=${a} />`)}</tbody>
              </table>
            </div>
            ${rows.length > shown.length && html`<p><button type="button" class="btn" onClick=${() => setLimit(limit + PAGE)}>
              Show ${Math.min(PAGE, rows.length - shown.length)} more</button></p>`}`}`}`;
}

// Trace (/runs/<id>/trace): the run's spans as a waterfall, one row per span in tree order,
// indented by depth, each bar placed by its start and end within the whole trace.
// Times are nanosecond integers sent as strings: BigInt keeps their precision (they exceed
// 2^53), and only the small differences become Numbers.

import { html, useEffect, useState } from './vendor/htm-preact-standalone.mjs';
import { api, isAbort } from './api.js';
import { paths } from './router.js';
import { ErrorBox, KeyValueTable, PageHeading, jsonCode, usePageTitle } from './ui.js';

function big(value) {
  try {
    const b = BigInt(String(value ?? ''));
    return b > 0n ? b : null;
  } catch {
    return null;
  }
}

export function formatMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  if (ms >= 1) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function isErrorSpan(span) {
  return /error/i.test(String(span.status ?? ''));
}

// Each span with `left` and `width` in percent of the trace, `ms` its duration, and
// `open` when it has no end yet (drawn up to the trace's end).
export function layoutSpans(spans) {
  const starts = spans.map((s) => big(s.start_unix_nano));
  const ends = spans.map((s) => big(s.end_unix_nano));
  const known = [...starts, ...ends].filter((x) => x !== null);
  if (!known.length) return { totalMs: 0, rows: spans.map((s) => ({ span: s, left: 0, width: 0, ms: NaN, open: true })) };
  const min = known.reduce((a, b) => (b < a ? b : a));
  const max = known.reduce((a, b) => (b > a ? b : a));
  const total = Number(max - min) || 1;
  const rows = spans.map((s, i) => {
    const start = starts[i] ?? min;
    const open = ends[i] === null || ends[i] < start;
    const end = open ? max : ends[i];
    return {
      span: s,
      left: (Number(start - min) / total) * 100,
      width: (Number(end - start) / total) * 100,
      ms: open ? NaN : Number(end - start) / 1e6,
      open,
    };
  });
  return { totalMs: Number(max - min) / 1e6, rows };
}

function Attributes({ span }) {
  const attrs = span.attributes && typeof span.attributes === 'object' ? Object.entries(span.attributes) : [];
  const cell = (v) => (v !== null && typeof v === 'object' ? jsonCode(v) : String(v));
  const rows = [['span id', span.span_id], ['kind', span.kind], ['status', span.status], ['status message', span.status_message], ...attrs.map(([k, v]) => [k, cell(v)])];
  return html`<${KeyValueTable} rows=${rows} caption=${`Attributes of ${span.name}`} />`;
}

function Row({ row }) {
  const s = row.span;
  const depth = Math.max(0, Math.min(Number(s.depth) || 0, 24));
  const error = isErrorSpan(s);
  return html`<tr class=${error ? 'span-error' : ''} data-testid="trace-span">
    <th scope="row" class="span-name">
      <div class="span-indent" style=${{ paddingLeft: `${depth * 0.9}rem` }}>
        <details>
          <summary>${s.name || '(unnamed)'}${error && html` <span class="badge badge-rejected">ERROR</span>`}</summary>
          <${Attributes} span=${s} />
        </details>
      </div>
    </th>
    <td class="span-service">${s.service || ''}</td>
    <td class="span-duration">${row.open ? 'running' : formatMs(row.ms)}</td>
    <td class="span-timeline">
      <div class="bar-track">
        <div class=${`bar${error ? ' bar-error' : ''}${row.open ? ' bar-open' : ''}`}
          style=${{ left: `${row.left.toFixed(3)}%`, width: `${row.width.toFixed(3)}%` }}></div>
      </div>
    </td>
  </tr>`;
}

export function TracePage({ runId }) {
  usePageTitle(`Trace of ${runId}`);
  const [trace, setTrace] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    const ctrl = new AbortController();
    setTrace(null);
    setError(null);
    api(`/api/runs/${encodeURIComponent(runId)}/trace`, { signal: ctrl.signal })
      .then((t) => setTrace(t || { spans: [] }))
      .catch((err) => {
        if (!isAbort(err)) setError(err);
      });
    return () => ctrl.abort();
  }, [runId]);

  const spans = trace && Array.isArray(trace.spans) ? trace.spans : [];
  const layout = layoutSpans(spans);
  const errors = spans.filter(isErrorSpan).length;

  return html`
    <p class="breadcrumb links"><a href=${paths.history({ run_id: runId })}>Approvals of this run</a>
      <a href=${paths.audit({ run_id: runId })}>Audit of this run</a></p>
    <${PageHeading}>Trace waterfall</${PageHeading}>
    <p>Run <code>${runId}</code>${trace && trace.trace_id && html` · trace <code>${trace.trace_id}</code>`}</p>
    <${ErrorBox} error=${error} title="Could not load the trace" />
    ${!trace && !error && html`<p class="muted" role="status">Loading the trace…</p>`}
    ${trace && !spans.length && html`<p class="empty">No spans were recorded for this run (tracing may be off).</p>`}
    ${spans.length > 0 && html`
      <p class="muted" data-testid="trace-summary">${spans.length} span${spans.length === 1 ? '' : 's'} over ${formatMs(layout.totalMs)}${errors ? html` · <strong class="text-error">${errors} with errors</strong>` : ''}</p>
      <div class="table-scroll" tabindex="0" role="region" aria-label="Trace waterfall (scrolls sideways on narrow screens)">
        <table class="waterfall">
          <caption class="visually-hidden">Spans of the run's trace in tree order, with their timing</caption>
          <thead><tr>
            <th scope="col">Span</th><th scope="col">Service</th><th scope="col">Duration</th>
            <th scope="col" class="span-timeline"><span class="visually-hidden">Timeline</span>
              <span class="axis" aria-hidden="true"><span>0</span><span>${formatMs(layout.totalMs)}</span></span></th>
          </tr></thead>
          <tbody>${layout.rows.map((row, i) => html`<${Row} key=${row.span.span_id || i} row=${row} />`)}</tbody>
        </table>
      </div>`}`;
}

// A run's events so far, then live: the /api/runs/<id>/events NDJSON stream stays open while
// the run is not finished. A broken stream is resumed from the last sequence; the fetch is
// aborted when the component goes away (the page is left).

import { html, useEffect, useRef, useState } from './vendor/htm-preact-standalone.mjs';
import { ApiError, backoffMs, isAbort, sleep, streamNdjson } from './api.js';
import { JsonTree } from './jsontree.js';
import { formatDateTime } from './time.js';
import { ErrorBox } from './ui.js';

// Events rendered at once; older ones behind a button (a long run can have thousands).
const SHOWN = 300;

const STATE_TEXT = {
  connecting: 'Loading events…',
  live: 'Following the run live.',
  reconnecting: 'Connection lost, reconnecting…',
  ended: 'The run has finished; no more events.',
  error: 'Events are not available.',
};

// `onEnded` runs once when the run's stream ends (the run finished): the page refreshes
// what it shows of the run.
export function RunEvents({ runId, onEnded }) {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState('connecting');
  const [error, setError] = useState(null);
  const [showAll, setShowAll] = useState(false);
  const endedRef = useRef(onEnded);
  endedRef.current = onEnded;

  useEffect(() => {
    if (!runId) return undefined;
    const ctrl = new AbortController();
    let last = -1; // the last sequence shown (a first event may be numbered 0)
    let attempt = 0;
    // Lines arrive in bursts (the whole history at once): render them in batches.
    let buffer = [];
    let flushTimer = 0;
    const flush = () => {
      flushTimer = 0;
      const batch = buffer;
      buffer = [];
      if (!ctrl.signal.aborted && batch.length) setEvents((old) => old.concat(batch));
    };
    setEvents([]);
    setError(null);
    setState('connecting');

    (async () => {
      while (!ctrl.signal.aborted) {
        let got = 0;
        try {
          await streamNdjson(`/api/runs/${encodeURIComponent(runId)}/events?after=${Math.max(0, last)}`, {
            signal: ctrl.signal,
            onOpen: () => {
              attempt = 0;
              setState('live');
            },
            onItem: (ev) => {
              if (!ev || typeof ev !== 'object' || ev.type === 'heartbeat') return;
              const seq = Number(ev.sequence);
              if (Number.isFinite(seq)) {
                if (seq <= last) return; // already shown before a reconnect
                last = seq;
              }
              got += 1;
              buffer.push(ev);
              if (!flushTimer) flushTimer = setTimeout(flush, 50);
            },
          });
          // The server ends the stream when the run ends, but a proxy may also cut it: ask
          // again; a finished run answers at once with nothing new.
          if (!got) {
            flush();
            setState('ended');
            if (endedRef.current) endedRef.current();
            return;
          }
        } catch (err) {
          if (isAbort(err) && ctrl.signal.aborted) return;
          if (err instanceof ApiError && err.httpStatus >= 400 && err.httpStatus < 500) {
            flush();
            setError(err);
            setState('error');
            return;
          }
          setState('reconnecting');
          await sleep(backoffMs(attempt), ctrl.signal);
          attempt += 1;
          continue;
        }
        await sleep(1000, ctrl.signal);
      }
    })();

    return () => {
      ctrl.abort();
      clearTimeout(flushTimer);
    };
  }, [runId]);

  const hidden = showAll ? 0 : Math.max(0, events.length - SHOWN);
  const shown = hidden ? events.slice(hidden) : events;
  return html`<div class="events">
    <p class="muted" role="status" aria-live="polite">${STATE_TEXT[state]}</p>
    <${ErrorBox} error=${error} title="Could not load the run's events" />
    ${events.length === 0 && state !== 'connecting' && !error && html`<p class="muted">No events yet.</p>`}
    ${hidden > 0 && html`<p><button type="button" class="link" onClick=${() => setShowAll(true)}>
      Show ${hidden} earlier event${hidden === 1 ? '' : 's'}</button></p>`}
    <ol class="event-list" data-testid="run-events">
      ${shown.map((ev, i) => html`<li key=${ev.sequence ?? `i${i + hidden}`} class="event">
        <span class="event-time"><time datetime=${ev.time || ''}>${formatDateTime(ev.time)}</time></span>
        <span class="event-type">${ev.type || 'event'}</span>
        <span class="event-summary">${ev.summary || ''}</span>
        ${ev.event && typeof ev.event === 'object' && html`<details class="event-detail">
          <summary>Details<span class="visually-hidden"> of event ${ev.sequence ?? ''}</span></summary>
          <${JsonTree} value=${ev.event} openDepth=${1} label=${`Event ${ev.sequence ?? ''}`} />
        </details>`}
      </li>`)}
    </ol>
  </div>`;
}

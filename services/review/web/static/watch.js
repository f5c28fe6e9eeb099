// The approvals watch: one long NDJSON stream, reconnected forever with backoff.
//
// It remembers the last sequence seen and reconnects with `after=<last>`, so no event is
// missed across a disconnect. A first connection (after=0) starts with the pending snapshot,
// delivered whole through onSnapshot once `snapshot_done` arrives. When the server cannot
// resume from our sequence (400 SEQUENCE_OUT_OF_RANGE, or any other 4xx but 401/403) it
// starts over with after=0, and the new snapshot replaces the queue.

import { ApiError, backoffMs, isAbort, sleep, streamNdjson } from './api.js';

// Heartbeats come every ~15 s: three missed ones mean the connection is dead.
const IDLE_MS = 45000;

// handlers: onSnapshot(approvals[]), onEvent({type, sequence, approval}),
// onState(state, message) with state 'connecting' | 'live' | 'reconnecting' | 'error'.
// Returns stop().
export function watchApprovals(handlers, { graph = '', stream = streamNdjson, wait = sleep } = {}) {
  const stopper = new AbortController();
  let after = 0;
  let attempt = 0;

  const seen = (msg) => {
    const n = Number(msg && msg.sequence);
    if (Number.isFinite(n) && n > after) after = n;
  };

  async function connectOnce() {
    const fresh = after === 0;
    // On a fresh connection, events up to snapshot_done build a new queue; anything else
    // (a live event, a heartbeat) before it also ends the snapshot, so a server that never
    // sends snapshot_done still shows its queue.
    let snapshot = fresh ? new Map() : null;
    const finishSnapshot = () => {
      if (!snapshot) return;
      const list = [...snapshot.values()];
      snapshot = null;
      handlers.onSnapshot(list);
    };
    const params = new URLSearchParams({ after: String(after) });
    if (graph) params.set('graph', graph);
    try {
      await stream(`/api/approvals/watch?${params}`, {
        signal: stopper.signal,
        idleMs: IDLE_MS,
        onOpen: () => {
          attempt = 0;
          handlers.onState('live', '');
        },
        onItem: (msg) => {
          if (!msg || typeof msg !== 'object') return;
          if (msg.type === 'heartbeat') {
            finishSnapshot();
            return;
          }
          seen(msg);
          if (msg.type === 'snapshot_done') {
            finishSnapshot();
            return;
          }
          const approval = msg.approval;
          if (!approval || !approval.approval_id) return;
          if (snapshot && msg.type === 'pending_snapshot') {
            snapshot.set(approval.approval_id, approval);
            return;
          }
          finishSnapshot();
          handlers.onEvent(msg);
        },
      });
    } finally {
      // A snapshot cut off before snapshot_done (the stream broke or ended) is not trusted:
      // start over with a new one rather than resume after sequences we never delivered.
      if (snapshot) after = 0;
    }
  }

  (async () => {
    handlers.onState('connecting', '');
    while (!stopper.signal.aborted) {
      let message = '';
      let state = 'reconnecting';
      try {
        await connectOnce(); // the server ended the stream: reconnect after the short delay
      } catch (err) {
        if (isAbort(err) && stopper.signal.aborted) return;
        message = err && err.message ? err.message : String(err);
        if (err instanceof ApiError && err.httpStatus >= 400 && err.httpStatus < 500) {
          if (err.httpStatus === 401) return; // the shell signs out
          if (err.httpStatus === 403) {
            state = 'error'; // keep trying slowly: a role may be granted
          } else {
            after = 0; // the server cannot resume from our sequence: take a new snapshot
          }
        }
      }
      if (stopper.signal.aborted) return;
      handlers.onState(state, message);
      await wait(backoffMs(attempt), stopper.signal);
      attempt += 1;
    }
  })();

  return () => stopper.abort();
}

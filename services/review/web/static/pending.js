// The live pending queue, shared by every page: fed by the approvals watch (watch.js), read
// by the queue, by the approval page (a "decided" event for the approval on screen, j/k
// order) and by the header's connection indicator. Also keeps the queue's filters so they
// survive a visit to an approval and back.

import { useEffect, useState } from './vendor/htm-preact-standalone.mjs';
import { watchApprovals } from './watch.js';
import { parseTime } from './time.js';

// How many approvals seen in events to remember (for the approval page); oldest dropped.
const MAX_LATEST = 2000;

export const AGES = [
  { value: 'any', label: 'any age', ms: 0 },
  { value: '5m', label: 'older than 5 min', ms: 5 * 60 * 1000 },
  { value: '1h', label: 'older than 1 h', ms: 60 * 60 * 1000 },
  { value: '1d', label: 'older than 1 day', ms: 24 * 60 * 60 * 1000 },
];

// The role filter's value for approvals any reviewer may decide.
export const NO_ROLE = '\u0000none';

function initialState() {
  return {
    pending: new Map(), // approval_id -> Approval, PENDING only
    latest: new Map(), // approval_id -> the Approval last seen in any event
    ready: false, // the first snapshot has arrived
    conn: 'idle', // idle | connecting | live | reconnecting | error
    connMessage: '',
    version: 0,
    filters: { graph: '', role: '', age: 'any' },
  };
}

let store = initialState();
let sorted = null; // cached newest-first list, dropped on every change
let stopWatch = null;
const listeners = new Set();

function emit() {
  store.version += 1;
  sorted = null;
  for (const fn of listeners) fn(store.version);
}

export function compareNewestFirst(a, b) {
  const ta = parseTime(a.created_at);
  const tb = parseTime(b.created_at);
  if (ta !== tb) return (Number.isNaN(tb) ? -Infinity : tb) - (Number.isNaN(ta) ? -Infinity : ta);
  return a.approval_id < b.approval_id ? 1 : a.approval_id > b.approval_id ? -1 : 0;
}

function remember(approval) {
  const latest = store.latest;
  latest.delete(approval.approval_id); // re-insert: Map order is our age order
  latest.set(approval.approval_id, approval);
  if (latest.size > MAX_LATEST) latest.delete(latest.keys().next().value);
}

function onSnapshot(list) {
  store.pending = new Map();
  for (const a of list) {
    remember(a);
    if (a.status === 'PENDING' || !a.status) store.pending.set(a.approval_id, a);
  }
  store.ready = true;
  emit();
}

function onEvent(msg) {
  const a = msg.approval;
  remember(a);
  if (msg.type === 'decided' || (a.status && a.status !== 'PENDING')) store.pending.delete(a.approval_id);
  else store.pending.set(a.approval_id, a);
  emit();
}

function onState(conn, message) {
  store.conn = conn;
  store.connMessage = message || '';
  emit();
}

export function startWatch() {
  if (stopWatch) return;
  stopWatch = watchApprovals({ onSnapshot, onEvent, onState });
}

// Sign-out: stop the stream and forget everything.
export function resetPending() {
  if (stopWatch) stopWatch();
  stopWatch = null;
  store = initialState();
  emit();
}

// Re-renders the caller on every change; returns the store (read it, do not mutate it).
export function usePending() {
  const [, setVersion] = useState(store.version);
  useEffect(() => {
    const fn = (v) => setVersion(v);
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, []);
  return store;
}

export function pendingNewestFirst() {
  if (!sorted) sorted = [...store.pending.values()].sort(compareNewestFirst);
  return sorted;
}

// The approval as the watch last saw it (null if it has not seen it).
export function watchedApproval(id) {
  return store.latest.get(id) || null;
}

export function setQueueFilters(filters) {
  store.filters = { ...store.filters, ...filters };
  emit();
}

export function matchesFilters(a, filters, now) {
  if (filters.graph && a.graph !== filters.graph) return false;
  if (filters.role === NO_ROLE && a.required_role) return false;
  if (filters.role && filters.role !== NO_ROLE && a.required_role !== filters.role) return false;
  const age = AGES.find((x) => x.value === filters.age);
  if (age && age.ms) {
    const t = parseTime(a.created_at);
    if (Number.isNaN(t) || now - t < age.ms) return false;
  }
  return true;
}

export function filteredPending(now = Date.now()) {
  return pendingNewestFirst().filter((a) => matchesFilters(a, store.filters, now));
}

// The pending approval after (+1, "j": older) or before (-1, "k": newer) `approval` in the
// queue's order and filters. Works for an approval no longer in the queue (just decided):
// its place is found from its creation time.
export function neighbour(approval, direction) {
  const list = filteredPending();
  if (!list.length) return null;
  const i = list.findIndex((a) => a.approval_id === approval.approval_id);
  if (i >= 0) return list[i + direction] || null;
  if (direction > 0) return list.find((a) => compareNewestFirst(approval, a) < 0) || null;
  return [...list].reverse().find((a) => compareNewestFirst(a, approval) < 0) || null;
}

// The approval as the watch last saw it, re-rendering the caller only when that changes (not
// on every event of a busy queue).
export function useWatchedApproval(id) {
  const [value, setValue] = useState(() => store.latest.get(id) || null);
  useEffect(() => {
    const fn = () => setValue(store.latest.get(id) || null); // same object: no re-render
    fn();
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, [id]);
  return value;
}

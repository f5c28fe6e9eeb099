// Times: parsing the server's ISO strings, relative ages, expiry countdowns, and one shared
// ticking clock so that a page of countdowns costs one timer, not one per row.

import { html, useEffect, useState } from './vendor/htm-preact-standalone.mjs';

// Milliseconds since the epoch, or NaN. Accepts RFC 3339 with any number of fraction digits
// (protobuf JSON writes up to nine, which not every Date parser takes).
export function parseTime(iso) {
  if (typeof iso !== 'string' || !iso) return NaN;
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/i.exec(iso.trim());
  if (!m) return Date.parse(iso);
  const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  let zone = (m[3] || 'Z').toUpperCase();
  if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  return Date.parse(`${m[1]}${frac}${zone}`);
}

// "4m 10s", "2h 5m", "3d 4h": the two largest units, for countdowns and durations.
export function formatDuration(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// "just now", "5 min ago", "3 h ago", "2 d ago" (a clock a little ahead reads "just now").
export function relativeTime(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (Number.isNaN(t)) return '—';
  const s = Math.floor((now - t) / 1000);
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function expiryText(expiresAt, now = Date.now()) {
  const t = parseTime(expiresAt);
  if (Number.isNaN(t)) return 'no expiry';
  if (t <= now) return 'expired';
  return `expires in ${formatDuration(t - now)}`;
}

// Local, unambiguous, sortable: "2026-12-07 15:53:02".
export function formatDateTime(iso) {
  const t = parseTime(iso);
  if (Number.isNaN(t)) return iso ? String(iso) : '—';
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// A datetime-local input's value (local time, no zone) as an ISO instant; '' stays ''.
export function localInputToIso(value) {
  if (!value) return '';
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? '' : new Date(t).toISOString();
}

// One interval per period shared by every subscriber.
const clocks = new Map(); // period -> {timer, subscribers:Set}

function subscribe(period, fn) {
  let clock = clocks.get(period);
  if (!clock) {
    clock = { subscribers: new Set(), timer: 0 };
    clock.timer = setInterval(() => {
      const now = Date.now();
      for (const f of clock.subscribers) f(now);
    }, period);
    clocks.set(period, clock);
  }
  clock.subscribers.add(fn);
  return () => {
    clock.subscribers.delete(fn);
    if (!clock.subscribers.size) {
      clearInterval(clock.timer);
      clocks.delete(period);
    }
  };
}

// The current time, re-rendering the caller every `period` ms (0: never ticks).
export function useNow(period = 1000) {
  const [now, setNow] = useState(Date.now);
  useEffect(() => (period ? subscribe(period, setNow) : undefined), [period]);
  return now;
}

// <time> with a relative age, the exact time as its tooltip.
export function RelTime({ iso }) {
  const now = useNow(10000);
  return html`<time datetime=${iso || ''} title=${formatDateTime(iso)}>${relativeTime(iso, now)}</time>`;
}

// A ticking "expires in 4m 10s" / "expired" / "no expiry".
export function Countdown({ expiresAt }) {
  const now = useNow(expiresAt ? 1000 : 0);
  const text = expiryText(expiresAt, now);
  const cls = text === 'expired' ? 'countdown expired' : 'countdown';
  return html`<span class=${cls} title=${expiresAt ? formatDateTime(expiresAt) : ''}>${text}</span>`;
}

// Whether `expiresAt` has passed, flipping to true at that moment (one timer, not a tick).
export function useExpired(expiresAt) {
  const [, setTick] = useState(0);
  const t = parseTime(expiresAt);
  const expired = !Number.isNaN(t) && t <= Date.now();
  useEffect(() => {
    if (Number.isNaN(t) || expired) return undefined;
    // setTimeout holds at most ~24.8 days; a longer wait re-arms on the next render.
    const timer = setTimeout(() => setTick((n) => n + 1), Math.min(t - Date.now() + 50, 2 ** 31 - 1));
    return () => clearTimeout(timer);
  }, [t, expired]);
  return expired;
}

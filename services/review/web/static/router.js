// Client-side routing: the backend serves index.html for every page path; links stay real
// <a href> elements (open in a new tab, copy the address) and plain clicks on them are
// turned into history.pushState here.

import { useEffect, useState } from './vendor/htm-preact-standalone.mjs';

const routes = [
  [/^\/$/, () => ({ name: 'queue' })],
  [/^\/approvals\/([^/]+)\/?$/, (m) => ({ name: 'approval', id: decodeURIComponent(m[1]) })],
  [/^\/history\/?$/, () => ({ name: 'history' })],
  [/^\/audit\/?$/, () => ({ name: 'audit' })],
  [/^\/runs\/([^/]+)\/trace\/?$/, (m) => ({ name: 'trace', runId: decodeURIComponent(m[1]) })],
];

export function parseRoute(pathname, search = '') {
  const params = new URLSearchParams(search);
  for (const [re, make] of routes) {
    const m = re.exec(pathname);
    if (m) {
      try {
        return { ...make(m), params, path: pathname };
      } catch {
        break; // a malformed %-escape
      }
    }
  }
  return { name: 'notfound', params, path: pathname };
}

export const paths = {
  queue: () => '/',
  approval: (id) => `/approvals/${encodeURIComponent(id)}`,
  history: (params) => `/history${search(params)}`,
  audit: (params) => `/audit${search(params)}`,
  trace: (runId) => `/runs/${encodeURIComponent(runId)}/trace`,
};

function search(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

const listeners = new Set();

function current() {
  return parseRoute(location.pathname, location.search);
}

export function navigate(href, { replace = false } = {}) {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin) {
    location.assign(url.href);
    return;
  }
  const target = url.pathname + url.search + url.hash;
  if (target === location.pathname + location.search + location.hash && !replace) return;
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  for (const fn of listeners) fn(current(), 'push');
}

// The current route; re-renders on navigate() and on back/forward. The second value says
// how we got here ('load', 'push', 'pop'): the shell moves focus only after a navigation.
export function useRoute() {
  const [state, setState] = useState(() => ({ route: current(), how: 'load' }));
  useEffect(() => {
    const onChange = (route, how) => setState({ route, how });
    const onPop = () => onChange(current(), 'pop');
    listeners.add(onChange);
    addEventListener('popstate', onPop);
    return () => {
      listeners.delete(onChange);
      removeEventListener('popstate', onPop);
    };
  }, []);
  return state;
}

// Document-level click handler: same-origin page links navigate in place; modified clicks,
// other targets, downloads and API/static links keep the browser's behaviour.
export function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target instanceof Element ? event.target.closest('a[href]') : null;
  if (!a || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  if (url.pathname.startsWith('/api/') || url.pathname.startsWith('/static/')) return;
  // An in-page anchor (the skip link): the browser scrolls and moves focus itself.
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

// The shell: sign-in state, the header (navigation, who is signed in, the live connection),
// and the router that picks the page. Pages live in their own modules.

import { html, render, useCallback, useEffect, useState } from './vendor/htm-preact-standalone.mjs';
import { api, clearToken, getToken, onUnauthorized } from './api.js';
import { ApprovalPage } from './approval.js';
import { AuditPage } from './audit.js';
import { forgetGraphs } from './graphs.js';
import { HistoryPage } from './history.js';
import { resetPending, startWatch, usePending } from './pending.js';
import { QueuePage } from './queue.js';
import { interceptLinks, useRoute } from './router.js';
import { SignIn } from './signin.js';
import { TracePage } from './trace.js';
import { ErrorBox, PageHeading, usePageTitle } from './ui.js';

const CONN_TEXT = {
  idle: 'connecting…',
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  error: 'reconnecting…',
};

function Connection() {
  const store = usePending();
  const text = CONN_TEXT[store.conn] || store.conn;
  return html`<span class=${`conn conn-${store.conn}`} title=${store.connMessage || ''}>
    <span class="conn-dot" aria-hidden="true"></span>
    <span role="status" aria-live="polite" data-testid="connection">${text}</span>
  </span>`;
}

function Header({ me, route, onSignOut }) {
  const link = (href, name, label) => html`<li><a href=${href} aria-current=${route.name === name ? 'page' : undefined}>${label}</a></li>`;
  const roles = Array.isArray(me.roles) && me.roles.length ? me.roles.join(', ') : 'no roles';
  return html`<header class="topbar">
    <p class="brand"><a href="/">graphmesh review</a></p>
    <nav aria-label="Main">
      <ul>${link('/', 'queue', 'Queue')}${link('/history', 'history', 'History')}${link('/audit', 'audit', 'Audit')}</ul>
    </nav>
    <div class="session">
      <${Connection} />
      <span data-testid="signed-in-as">Signed in as <strong>${me.principal}</strong> (${roles})</span>
      <button type="button" class="btn btn-small" data-testid="sign-out" onClick=${() => onSignOut('')}>Sign out</button>
    </div>
  </header>`;
}

function NotFound() {
  usePageTitle('Not found');
  return html`<${PageHeading}>Page not found</${PageHeading}><p><a href="/">Go to the queue</a></p>`;
}

function Page({ route, me }) {
  switch (route.name) {
    case 'queue':
      return html`<${QueuePage} />`;
    case 'approval':
      // Keyed: another approval is a fresh page, never the last one's state (or its buttons).
      return html`<${ApprovalPage} key=${route.id} id=${route.id} me=${me} />`;
    case 'history':
      return html`<${HistoryPage} params=${route.params} />`;
    case 'audit':
      return html`<${AuditPage} params=${route.params} />`;
    case 'trace':
      return html`<${TracePage} runId=${route.runId} />`;
    default:
      return html`<${NotFound} />`;
  }
}

function App() {
  const [me, setMe] = useState(null);
  const [phase, setPhase] = useState(() => (getToken() ? 'checking' : 'signed-out'));
  const [authMessage, setAuthMessage] = useState('');
  const [bootError, setBootError] = useState(null);
  const { route, how } = useRoute();

  const signOut = useCallback((message) => {
    clearToken();
    resetPending();
    forgetGraphs();
    setMe(null);
    setBootError(null);
    setAuthMessage(message || '');
    setPhase('signed-out');
  }, []);

  useEffect(() => onUnauthorized((message) => signOut(`You were signed out: ${message}`)), [signOut]);

  // A token from earlier in this tab: check it is still good.
  const check = useCallback(() => {
    setPhase('checking');
    api('/api/me')
      .then((who) => {
        setMe(who);
        setPhase('signed-in');
      })
      .catch((err) => {
        if (err.httpStatus === 401) return; // onUnauthorized signed out already
        if (err.httpStatus === 403) signOut(err.message);
        else {
          setBootError(err);
          setPhase('error');
        }
      });
  }, [signOut]);

  useEffect(() => {
    if (phase === 'checking') check();
  }, []);

  useEffect(() => {
    if (phase === 'signed-in') startWatch();
  }, [phase]);

  // After a navigation (not the first load) start at the top and put focus on the new
  // page's heading, so keyboard and screen-reader users land on the new content.
  useEffect(() => {
    if (how === 'load') return;
    if (how === 'push') window.scrollTo(0, 0);
    requestAnimationFrame(() => {
      const h = document.querySelector('#content h1');
      if (h) h.focus({ preventScroll: how !== 'push' });
    });
  }, [route]);

  if (phase === 'signed-out') {
    return html`<header class="topbar"><p class="brand">graphmesh review</p></header>
      <div id="content" class="page"><${SignIn} message=${authMessage} onSignedIn=${(who) => {
        setMe(who);
        setAuthMessage('');
        setPhase('signed-in');
      }} /></div>`;
  }
  if (phase !== 'signed-in') {
    return html`<header class="topbar"><p class="brand">graphmesh review</p></header>
      <div id="content" class="page">
        ${phase === 'checking' && html`<p class="muted" role="status">Checking your sign-in…</p>`}
        ${phase === 'error' && html`<${ErrorBox} error=${bootError} title="The review server did not answer" />
          <p><button type="button" class="btn" onClick=${check}>Try again</button>
          <button type="button" class="btn" onClick=${() => signOut('')}>Sign in again</button></p>`}
      </div>`;
  }
  return html`<a class="skip-link" href="#content">Skip to content</a>
    <${Header} me=${me} route=${route} onSignOut=${signOut} />
    <div id="content" class="page" tabindex="-1"><${Page} route=${route} me=${me} /></div>`;
}

document.addEventListener('click', interceptLinks);
render(html`<${App} />`, document.getElementById('app'));

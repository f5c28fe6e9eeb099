// One approval (/approvals/<id>): what the interrupt asks, the decide panel, the run and its
// versions, the thread's state and the run's live events. A decision made here, by someone
// else (a watch "decided" event) or by the clock (expiry) updates the page in place.

import { html, useCallback, useEffect, useRef, useState } from './vendor/htm-preact-standalone.mjs';
import { api, isAbort } from './api.js';
import { DecidePanel } from './decide.js';
import { RunEvents } from './events.js';
import { JsonTree } from './jsontree.js';
import { HitlView, HumanInterruptView, hitlRequest, humanInterrupts, shapeNote } from './payload.js';
import { neighbour, useWatchedApproval, watchedApproval } from './pending.js';
import { navigate, paths } from './router.js';
import { Countdown, RelTime, formatDateTime, useExpired } from './time.js';
import { ErrorBox, KeyValueTable, PageHeading, StatusBadge, flatten, shortcutAllowed, usePageTitle } from './ui.js';

export const SHORTCUTS = [
  ['a', 'Approve'],
  ['r', 'Reject'],
  ['e', 'Edit (opens the JSON editor)'],
  ['j', 'Next pending approval in the queue'],
  ['k', 'Previous pending approval in the queue'],
  ['?', 'Show or hide this list'],
  ['Ctrl+Enter', 'Send the edit (in the JSON editor)'],
];

function kindText(kind) {
  return String(kind || '').replace(/^DECISION_KIND_/, '').toUpperCase() || 'DECIDED';
}

// The sentence that says how the approval was closed. `outcome`: 'mine' (decided here),
// 'conflict' (someone decided first: our decision was refused), else learned from the server.
export function decisionText(approval, outcome, principal) {
  const d = approval.decision || {};
  const at = d.decided_at ? ` at ${formatDateTime(d.decided_at)}` : '';
  if (approval.status === 'EXPIRED') return `Expired${at}: nobody decided before the time limit.`;
  if (approval.status === 'CANCELLED') return `Cancelled${at}${d.reviewer ? ` by ${d.reviewer}` : ''}: the run was cancelled.`;
  if (!d.kind) return `Closed: ${approval.status}`;
  const kind = kindText(d.kind);
  if (outcome === 'conflict') return `Already decided by ${d.reviewer || 'someone else'}: ${kind}${at}`;
  if (outcome === 'mine' || (principal && d.reviewer === principal)) return `Decided: ${kind} by you${at}`;
  return `Decided by ${d.reviewer || 'unknown'}: ${kind}${at}`;
}

function Decision({ approval, outcome, principal }) {
  const d = approval.decision || {};
  return html`<div class=${`decision-result card ${outcome === 'conflict' ? 'conflict' : ''}`}>
    <p data-testid="decision"><strong>${decisionText(approval, outcome, principal)}</strong></p>
    ${outcome === 'conflict' && html`<p class="muted">Your decision was not recorded.</p>`}
    ${d.comment && html`<p>Comment: <q class="prewrap">${d.comment}</q></p>`}
    ${d.edited_value !== undefined && d.edited_value !== null && html`<div>
      <p>Edited value:</p><${JsonTree} value=${d.edited_value} label="Edited value" />
    </div>`}
    ${approval.status === 'RESPONDED' && html`<div>
      <p>Resumed with this value, as given:</p><${JsonTree} value=${d.value ?? null} label="Resume value" />
    </div>`}
  </div>`;
}

function Payload({ approval }) {
  const hi = approval.resume_shape === 'human_interrupt' ? humanInterrupts(approval.payload) : null;
  const hitl = !hi && approval.resume_shape === 'hitl' ? hitlRequest(approval.payload) : null;
  const note = shapeNote(approval.resume_shape);
  return html`<section aria-labelledby="payload-heading">
    <h2 id="payload-heading">What the graph asks</h2>
    ${note && html`<p class="muted small">Resume shape <code>${approval.resume_shape}</code>: ${note}</p>`}
    ${hi && html`<${HumanInterruptView} items=${hi} />`}
    ${hitl && html`<${HitlView} request=${hitl} />`}
    ${hi || hitl
      ? html`<details class="raw"><summary>Raw payload</summary><${JsonTree} value=${approval.payload} label="Raw payload" /></details>`
      : html`<div class="card"><${JsonTree} value=${approval.payload} openDepth=${3} label="Interrupt payload" /></div>`}
  </section>`;
}

function RunSection({ approval, run, runError }) {
  const a = approval;
  const rows = [
    ['Approval id', html`<code>${a.approval_id}</code>`],
    ['Run id', a.run_id && html`<code>${a.run_id}</code>`],
    ['Thread id', a.thread_id && html`<code>${a.thread_id}</code>`],
    ['Graph', a.graph],
    ['Graph version', a.graph_version],
    ['Node', a.node],
    ['Interrupt id', a.interrupt_id && html`<code>${a.interrupt_id}</code>`],
    ['Required role', a.required_role || 'any reviewer'],
    ['Created', a.created_at && html`${formatDateTime(a.created_at)} (<${RelTime} iso=${a.created_at} />)`],
    ['Expires', a.expires_at ? html`${formatDateTime(a.expires_at)} (<${Countdown} expiresAt=${a.expires_at} />)` : 'no expiry'],
  ];
  return html`<section aria-labelledby="run-heading">
    <h2 id="run-heading">Run</h2>
    <p class="links">
      ${a.run_id && html`<a href=${paths.trace(a.run_id)}>Trace waterfall</a>`}
      ${a.run_id && html`<a href=${paths.history({ run_id: a.run_id })}>Approvals of this run</a>`}
      <a href=${paths.audit({ approval_id: a.approval_id })}>Audit of this approval</a>
    </p>
    <div class="table-scroll"><${KeyValueTable} rows=${rows} caption="Approval" /></div>
    ${run && html`<div class="table-scroll"><${KeyValueTable} rows=${flatten(run)} caption="Run record" /></div>`}
    ${runError && html`<p class="muted">Run record not available: ${runError}</p>`}
  </section>`;
}

function StateSection({ state, stateError, onReload, reloading }) {
  return html`<section aria-labelledby="state-heading">
    <h2 id="state-heading">Thread state</h2>
    <p><button type="button" class="btn btn-small" onClick=${onReload} disabled=${reloading}>
      ${reloading ? 'Reloading…' : 'Reload state'}</button></p>
    ${stateError && html`<p class="muted">State not available: ${stateError}</p>`}
    ${state && html`<div class="table-scroll"><${KeyValueTable} rows=${[
      ['Checkpoint', state.checkpoint_id && html`<code>${state.checkpoint_id}</code>`],
      ['Next nodes', Array.isArray(state.next) ? state.next.join(', ') || '(none)' : undefined],
    ]} /></div>
    <div class="card"><${JsonTree} value=${state.values ?? null} openDepth=${1} label="Thread state values" /></div>`}
    ${!state && !stateError && html`<p class="muted">No state recorded.</p>`}
  </section>`;
}

// A native modal <dialog>: it traps focus, closes on Escape and gives focus back by itself.
// Opened and closed through the element (no state), so a fast "?" "?" cannot race a render.
function ShortcutDialog({ dialogRef }) {
  return html`<dialog ref=${dialogRef} class="shortcuts" aria-labelledby="shortcuts-heading">
    <h2 id="shortcuts-heading">Keyboard shortcuts</h2>
    <p class="muted small">Single keys work when you are not typing in a field.</p>
    <dl>${SHORTCUTS.map(([k, what]) => html`<div key=${k}><dt><kbd>${k}</kbd></dt><dd>${what}</dd></div>`)}</dl>
    <button type="button" class="btn" onClick=${() => dialogRef.current && dialogRef.current.close()}>Close</button>
  </dialog>`;
}

function toggleDialog(dialog) {
  if (!dialog) return;
  if (dialog.open) dialog.close();
  else dialog.showModal();
}

export function ApprovalPage({ id, me }) {
  usePageTitle(`Approval ${id}`);
  const [detail, setDetail] = useState(null);
  const [approval, setApproval] = useState(null);
  const [outcome, setOutcome] = useState(null);
  const [error, setError] = useState(null);
  const [reloading, setReloading] = useState(false);
  const keysDialog = useRef(null);
  const [navNote, setNavNote] = useState('');
  const principal = me && me.principal;
  const expired = useExpired(approval && approval.expires_at);

  const load = useCallback(async (signal) => {
    const answer = await api(`/api/approvals/${encodeURIComponent(id)}`, { signal });
    setDetail(answer);
    // A decision already shown here stays: the server's record can only be the same or later.
    setApproval((old) => (old && old.status !== 'PENDING' && answer.approval.status === 'PENDING' ? old : answer.approval));
  }, [id]);

  useEffect(() => {
    const ctrl = new AbortController();
    setDetail(null);
    setApproval(null);
    setOutcome(null);
    setError(null);
    setNavNote('');
    load(ctrl.signal).catch((err) => {
      if (!isAbort(err)) setError(err);
    });
    return () => ctrl.abort();
  }, [load]);

  // Decided elsewhere (another reviewer, the CLI, expiry, a cancelled run): show it in place.
  const watched = useWatchedApproval(id);
  useEffect(() => {
    if (approval && watched && approval.status === 'PENDING' && watched.status && watched.status !== 'PENDING') {
      setApproval({ ...approval, ...watched, can_decide: false });
    }
  }, [approval, watched]);

  const onDecided = useCallback((updated, how) => {
    setApproval((old) => ({ ...(old || {}), ...updated, can_decide: false }));
    setOutcome(how);
  }, []);

  const reload = async () => {
    setReloading(true);
    try {
      await load();
    } catch (err) {
      if (!isAbort(err)) setError(err);
    } finally {
      setReloading(false);
    }
  };

  // j / k / ? on this page; a / r / e belong to the decide panel.
  useEffect(() => {
    const onKey = (event) => {
      if (event.key === '?' && shortcutAllowed(event, { inDialog: true })) {
        event.preventDefault();
        toggleDialog(keysDialog.current);
        return;
      }
      if (!shortcutAllowed(event)) return;
      if (event.key === 'j' || event.key === 'k') {
        event.preventDefault();
        // Works while this page is still loading: the queue knows the approval too.
        const here = (approval && approval.approval_id === id && approval) || watchedApproval(id) || { approval_id: id };
        const next = neighbour(here, event.key === 'j' ? 1 : -1);
        if (next) navigate(paths.approval(next.approval_id));
        else setNavNote(event.key === 'j' ? 'No older pending approval in the queue.' : 'No newer pending approval in the queue.');
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [approval, id]);

  // The breadcrumb and heading stay the same elements from "Loading…" to the loaded page, so
  // the focus the shell puts on the heading after a navigation is not lost.
  const top = (title) => html`
    <p class="breadcrumb"><a href="/">Queue</a> <span aria-hidden="true">›</span> Approval</p>
    <${PageHeading}>${title}</${PageHeading}>`;
  if (error && !approval) {
    return html`${top('Approval')}
      <${ErrorBox} error=${error} title=${error.httpStatus === 404 ? 'No such approval' : 'Could not load the approval'} />
      <p><a href="/">Back to the queue</a></p>`;
  }
  if (!approval) {
    return html`${top('Approval')}<p class="muted" role="status">Loading…</p>`;
  }

  const pending = approval.status === 'PENDING';
  const expiredHere = pending && expired;
  const decidable = pending && !expiredHere && approval.can_decide === true;
  const reason = approval.cannot_decide_reason;

  return html`
    ${top(html`${approval.graph || 'Approval'}${approval.node ? ` · ${approval.node}` : ''}`)}
    <div class="status-line">
      <${StatusBadge} status=${expiredHere ? 'EXPIRED' : approval.status} testid="approval-status" />
      ${pending && html`<${Countdown} expiresAt=${approval.expires_at} />`}
      <span class="muted small">approval <code>${approval.approval_id}</code></span>
    </div>
    <div role="status" aria-live="polite" class="live-region">
      ${!pending && html`<${Decision} approval=${approval} outcome=${outcome} principal=${principal} />`}
      ${expiredHere && html`<p class="card">The time limit passed at ${formatDateTime(approval.expires_at)}: this approval can no longer be decided.</p>`}
      ${navNote && html`<p class="muted">${navNote}</p>`}
    </div>
    <${ErrorBox} error=${error} title="Could not reload" />
    <${Payload} approval=${approval} />
    ${decidable && html`<${DecidePanel} key=${approval.approval_id} approval=${approval} onDecided=${onDecided} />`}
    ${!decidable && !expiredHere && (pending || (reason && !outcome)) && html`<p class="cannot-decide card" data-testid="cannot-decide">
      ${reason || 'You cannot decide this approval.'}</p>`}
    <p class="kbd-hint">
      ${decidable && html`<kbd>a</kbd> approve · <kbd>r</kbd> reject · <kbd>e</kbd> edit · `}<kbd>j</kbd>/<kbd>k</kbd> next/previous pending ·
      <button type="button" class="link" onClick=${() => toggleDialog(keysDialog.current)}><kbd>?</kbd> all shortcuts</button>
    </p>
    <${RunSection} approval=${approval} run=${detail && detail.run} runError=${detail && detail.run_error} />
    <${StateSection} state=${detail && detail.thread_state} stateError=${detail && detail.state_error}
      onReload=${reload} reloading=${reloading} />
    <section aria-labelledby="events-heading">
      <h2 id="events-heading">Run events</h2>
      ${approval.run_id ? html`<${RunEvents} runId=${approval.run_id} onEnded=${reload} />` : html`<p class="muted">No run.</p>`}
    </section>
    <${ShortcutDialog} dialogRef=${keysDialog} />`;
}

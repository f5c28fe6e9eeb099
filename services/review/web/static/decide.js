// The decide panel of one approval: comment, Approve / Reject / Edit (only those the
// approval allows), the JSON editor for an edit, and the a / r / e keyboard shortcuts.
// It is shown only while the signed-in reviewer may decide; the answer (or a conflict: someone
// decided first) goes to the page through onDecided, which then hides the panel.

import { html, useEffect, useMemo, useRef, useState } from './vendor/htm-preact-standalone.mjs';
import { api, ApiError } from './api.js';
import { defaultEditValue, editHelp, isObject } from './payload.js';
import { ErrorBox, shortcutAllowed } from './ui.js';

export function parseEdit(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `Not valid JSON: ${err.message}` };
  }
  if (!isObject(value)) return { error: 'The edited value must be a JSON object: { ... }.' };
  return { value };
}

// A refusal because the approval is no longer pending (409 ALREADY_DECIDED, or expired,
// cancelled: FAILED_PRECONDITION) carries the approval as it now stands; only those do.
function conflictApproval(err) {
  return err instanceof ApiError && err.body && isObject(err.body.approval) ? err.body.approval : null;
}

const BUSY_TEXT = { approve: 'Approving…', reject: 'Rejecting…', edit: 'Sending the edit…' };

export function DecidePanel({ approval, onDecided }) {
  const allowed = useMemo(() => {
    const list = Array.isArray(approval.allowed_decisions) ? approval.allowed_decisions : ['approve', 'reject', 'edit'];
    return new Set(list.map((d) => String(d).toLowerCase()));
  }, [approval.allowed_decisions]);
  const initialEdit = useMemo(() => JSON.stringify(defaultEditValue(approval), null, 2), [approval.approval_id]);

  const [comment, setComment] = useState('');
  const [commentError, setCommentError] = useState('');
  const [editing, setEditing] = useState(false);
  const [editText, setEditText] = useState(initialEdit);
  const [busy, setBusy] = useState('');
  const [error, setError] = useState(null);
  const commentRef = useRef(null);
  const editRef = useRef(null);
  const parsed = useMemo(() => parseEdit(editText), [editText]);

  async function send(kind) {
    if (busy || !allowed.has(kind)) return;
    if (kind === 'reject' && approval.reject_needs_comment && !comment.trim()) {
      setCommentError('Rejecting this approval needs a comment: it is sent to the graph as the response.');
      if (commentRef.current) commentRef.current.focus();
      return;
    }
    const body = { kind, comment };
    if (kind === 'edit') {
      if (parsed.error) return;
      body.edited_value = parsed.value;
    }
    setBusy(kind);
    setError(null);
    try {
      const answer = await api(`/api/approvals/${encodeURIComponent(approval.approval_id)}/decision`, { method: 'POST', body });
      setBusy('');
      onDecided(answer && answer.approval ? answer.approval : approval, 'mine');
    } catch (err) {
      setBusy('');
      const current = conflictApproval(err);
      if (current) onDecided(current, 'conflict');
      else setError(err);
    }
  }

  function openEditor() {
    if (!allowed.has('edit') || busy) return;
    setEditing(true);
    // The textarea exists after this render.
    setTimeout(() => editRef.current && editRef.current.focus(), 0);
  }

  // a / r / e anywhere on the page, except while typing in a field.
  useEffect(() => {
    const onKey = (event) => {
      if (!shortcutAllowed(event)) return;
      const action = { a: 'approve', r: 'reject', e: 'edit' }[event.key];
      if (!action || !allowed.has(action)) return;
      event.preventDefault();
      if (action === 'edit') openEditor();
      else send(action);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  });

  const onEditKey = (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!parsed.error) send('edit');
    }
  };

  const noneAllowed = !['approve', 'reject', 'edit'].some((d) => allowed.has(d));
  const commentHint = approval.reject_needs_comment ? 'Needed to reject: the graph receives it as the response.' : 'Optional; recorded with the decision and in the audit trail.';

  return html`<section class="decide card" aria-labelledby="decide-heading" aria-busy=${busy ? 'true' : 'false'}>
    <h2 id="decide-heading">Decide</h2>
    <div class="field">
      <label for="decision-comment">Comment</label>
      <textarea id="decision-comment" ref=${commentRef} rows="3" value=${comment}
        aria-describedby="decision-comment-hint decision-comment-error"
        aria-invalid=${commentError ? 'true' : 'false'}
        onInput=${(e) => { setComment(e.currentTarget.value); setCommentError(''); }}></textarea>
      <p id="decision-comment-hint" class="hint">${commentHint}</p>
      <p id="decision-comment-error" class="field-error" role="alert">${commentError}</p>
    </div>
    ${noneAllowed && html`<p class="muted">This approval allows no decision from this page.</p>`}
    <div class="buttons">
      ${allowed.has('approve') && html`<button type="button" class="btn btn-approve" data-testid="approve"
        disabled=${Boolean(busy)} onClick=${() => send('approve')}>Approve</button>`}
      ${allowed.has('reject') && html`<button type="button" class="btn btn-reject" data-testid="reject"
        disabled=${Boolean(busy)} onClick=${() => send('reject')}>Reject</button>`}
      ${allowed.has('edit') && html`<button type="button" class="btn" data-testid="edit"
        aria-expanded=${editing ? 'true' : 'false'} aria-controls="edit-panel"
        disabled=${Boolean(busy)} onClick=${() => (editing ? setEditing(false) : openEditor())}>Edit</button>`}
    </div>
    ${editing && html`<div id="edit-panel" class="edit-panel">
      <div class="field">
        <label for="edit-value">Edited value (JSON object)</label>
        <textarea id="edit-value" data-testid="edit-value" ref=${editRef} rows="12" class="code"
          spellcheck="false" autocomplete="off" value=${editText}
          aria-invalid=${parsed.error ? 'true' : 'false'}
          aria-describedby="edit-value-help edit-value-error"
          onInput=${(e) => setEditText(e.currentTarget.value)} onKeyDown=${onEditKey}></textarea>
        <p id="edit-value-help" class="hint">${editHelp(approval)} Ctrl+Enter sends.</p>
        <p id="edit-value-error" class="field-error" aria-live="polite">${parsed.error || ''}</p>
      </div>
      <div class="buttons">
        <button type="button" class="btn btn-primary" data-testid="send-edit"
          disabled=${Boolean(parsed.error) || Boolean(busy)} onClick=${() => send('edit')}>Send edit</button>
        <button type="button" class="btn" onClick=${() => setEditText(initialEdit)} disabled=${Boolean(busy)}>Reset</button>
        <button type="button" class="btn" onClick=${() => setEditing(false)} disabled=${Boolean(busy)}>Cancel</button>
      </div>
    </div>`}
    <p class="muted" role="status" aria-live="polite">${busy ? BUSY_TEXT[busy] : ''}</p>
    <${ErrorBox} error=${error} title="The decision was not recorded" />
  </section>`;
}

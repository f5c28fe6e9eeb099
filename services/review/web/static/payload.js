// What an interrupt asks, read from its payload: one-line summaries for the queue, the
// LangGraph HumanInterrupt and LangChain HITL request views, and the edit form's starting
// value (docs/resume-values.md describes the shapes).

import { html } from './vendor/htm-preact-standalone.mjs';
import { JsonTree } from './jsontree.js';

export function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isHumanInterrupt(x) {
  return isObject(x) && isObject(x.action_request) && typeof x.action_request.action === 'string';
}

// The payload's HumanInterrupts (a list, or one sent alone), or null.
export function humanInterrupts(payload) {
  const list = Array.isArray(payload) ? payload : [payload];
  return list.length && list.every(isHumanInterrupt) ? list : null;
}

// The payload as a HITL request {action_requests, review_configs}, or null.
export function hitlRequest(payload) {
  if (!isObject(payload) || !Array.isArray(payload.action_requests)) return null;
  return {
    action_requests: payload.action_requests.map((r) => (isObject(r) ? r : {})),
    review_configs: Array.isArray(payload.review_configs) ? payload.review_configs.filter(isObject) : [],
  };
}

// A HITL action request's allowed decisions: its review config matched by action name,
// else by position (as the backend matches them); null when the payload names none.
export function hitlAllowed(request, index) {
  const name = request.action_requests[index] && request.action_requests[index].name;
  const cfg = request.review_configs.find((c) => c.action_name === name) || request.review_configs[index];
  return cfg && Array.isArray(cfg.allowed_decisions) ? cfg.allowed_decisions.map(String) : null;
}

function truncate(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// Payload keys whose string value is a human-readable description of the request.
const SAYING_KEYS = ['summary', 'question', 'message', 'description', 'title', 'prompt'];

// One line for the queue: HumanInterrupt action names, HITL action names, else the
// payload's human-readable summary field, else its first keys (with short scalar values).
export function summarize(payload) {
  const hi = humanInterrupts(payload);
  if (hi) return truncate(hi.map((h) => h.action_request.action).join(', '), 120);
  const hitl = hitlRequest(payload);
  if (hitl) {
    const names = hitl.action_requests.map((r) => r.name).filter((n) => typeof n === 'string');
    return truncate(names.length ? names.join(', ') : 'tool calls', 120);
  }
  if (typeof payload === 'string') return truncate(payload, 120);
  if (Array.isArray(payload)) return `${payload.length} item${payload.length === 1 ? '' : 's'}`;
  if (isObject(payload)) {
    const entries = Object.entries(payload);
    if (!entries.length) return '(empty)';
    // A field written for people ({"summary": "Refund 42.00 to order-17"}) says it best.
    const said = SAYING_KEYS.map((k) => payload[k]).find((v) => typeof v === 'string' && v.trim());
    if (said) return truncate(said.trim(), 120);
    const parts = entries.slice(0, 3).map(([k, v]) => {
      if (typeof v === 'string') return `${k}: ${truncate(v, 40)}`;
      if (typeof v === 'number' || typeof v === 'boolean') return `${k}: ${v}`;
      return k;
    });
    return truncate(parts.join(', ') + (entries.length > 3 ? ', …' : ''), 120);
  }
  return payload === null || payload === undefined ? '(no payload)' : String(payload);
}

// The edit form's starting value: what an edit most often changes.
export function defaultEditValue(approval) {
  const payload = approval.payload;
  const hi = approval.resume_shape === 'human_interrupt' ? humanInterrupts(payload) : null;
  if (hi) return isObject(hi[0].action_request.args) ? hi[0].action_request.args : {};
  const hitl = approval.resume_shape === 'hitl' ? hitlRequest(payload) : null;
  if (hitl && hitl.action_requests.length > 1) {
    // Several action requests: only a full decisions list can edit one of them.
    return {
      decisions: hitl.action_requests.map((r, i) => {
        const allowed = hitlAllowed(hitl, i);
        return !allowed || allowed.includes('edit')
          ? { type: 'edit', edited_action: { name: r.name, args: isObject(r.args) ? r.args : {} } }
          : { type: 'approve' };
      }),
    };
  }
  if (hitl && hitl.action_requests.length === 1) {
    const args = hitl.action_requests[0].args;
    return isObject(args) ? args : {};
  }
  return isObject(payload) ? payload : {};
}

// What an edited value means for this approval's resume shape.
export function editHelp(approval) {
  const hi = humanInterrupts(approval.payload);
  const hitl = hitlRequest(approval.payload);
  switch (approval.resume_shape) {
    case 'human_interrupt':
      return hi
        ? `The new arguments for ${hi[0].action_request.action} (or a whole {"action", "args"} request).`
        : 'The new arguments (or a whole {"action", "args"} request).';
    case 'hitl':
      if (hitl && hitl.action_requests.length > 1) {
        return 'One decision per action request, in order: {"type": "approve"}, {"type": "reject", "message": ...} or {"type": "edit", "edited_action": {"name", "args"}}.';
      }
      return 'The new arguments for the tool call (or a whole {"name", "args"} action).';
    case 'record':
      return "Recorded as the decision's edited_value, which the graph reads.";
    default:
      return "The graph's interrupt() returns this object in place of the original.";
  }
}

// What approve / reject / edit will hand back to the graph.
export function shapeNote(shape) {
  switch (shape) {
    case 'human_interrupt':
      return 'LangGraph HumanInterrupt: approve answers "accept", reject answers "ignore" (or "response" with your comment where allowed), edit answers "edit" with the new arguments.';
    case 'hitl':
      return 'LangChain human-in-the-loop request: approve or reject applies to every action request; edit sends edited actions.';
    case 'record':
      return 'The graph receives the decision record (approved, decision, comment, reviewer, edited value).';
    case 'plain':
      return "The graph's interrupt() returns true for approve, false for reject, the edited object for edit.";
    default:
      return '';
  }
}

function ArgsTable({ args, label }) {
  if (!isObject(args)) return html`<${JsonTree} value=${args} label=${label} />`;
  const entries = Object.entries(args);
  if (!entries.length) return html`<p class="muted">No arguments.</p>`;
  return html`<div class="table-scroll"><table class="kv args">
    <caption class="visually-hidden">${label}</caption>
    <tbody>${entries.map(([k, v]) => html`<tr key=${k}>
      <th scope="row">${k}</th><td><${JsonTree} value=${v} openDepth=${1} label=${k} /></td>
    </tr>`)}</tbody>
  </table></div>`;
}

function Allowed({ items }) {
  return html`<ul class="chips">${items.map(([name, ok]) => html`
    <li key=${name} class=${ok ? 'chip chip-yes' : 'chip chip-no'}>
      ${name}: ${ok ? 'allowed' : 'not allowed'}
    </li>`)}</ul>`;
}

export function HumanInterruptView({ items }) {
  return html`${items.map((h, i) => {
    const cfg = isObject(h.config) ? h.config : {};
    const action = h.action_request.action;
    return html`<section class="card" key=${i} aria-labelledby=${`hi-${i}`}>
      <h3 id=${`hi-${i}`}>${items.length > 1 ? `${i + 1}. ` : ''}Action <code>${action}</code></h3>
      ${typeof h.description === 'string' && h.description && html`<p class="prewrap">${h.description}</p>`}
      <h4>Arguments</h4>
      <${ArgsTable} args=${h.action_request.args} label=${`Arguments of ${action}`} />
      <h4>Responses this request allows</h4>
      <${Allowed} items=${[
        ['accept', Boolean(cfg.allow_accept)],
        ['edit', Boolean(cfg.allow_edit)],
        ['respond', Boolean(cfg.allow_respond)],
        ['ignore', Boolean(cfg.allow_ignore)],
      ]} />
    </section>`;
  })}`;
}

export function HitlView({ request }) {
  if (!request.action_requests.length) return html`<p class="muted">No action requests.</p>`;
  return html`${request.action_requests.map((r, i) => {
    const allowed = hitlAllowed(request, i);
    const name = typeof r.name === 'string' ? r.name : `action ${i + 1}`;
    return html`<section class="card" key=${i} aria-labelledby=${`hitl-${i}`}>
      <h3 id=${`hitl-${i}`}>${request.action_requests.length > 1 ? `${i + 1}. ` : ''}Tool call <code>${name}</code></h3>
      ${typeof r.description === 'string' && r.description && html`<p class="prewrap">${r.description}</p>`}
      <h4>Arguments</h4>
      <${ArgsTable} args=${r.args} label=${`Arguments of ${name}`} />
      <h4>Allowed decisions</h4>
      ${allowed
        ? html`<${Allowed} items=${[...new Set(['approve', 'edit', 'reject', ...allowed])].map((d) => [d, allowed.includes(d)])} />`
        : html`<p class="muted">No review config names this action.</p>`}
    </section>`;
  })}`;
}

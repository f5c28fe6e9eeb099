// What the History and Audit pages share: a filter form whose values live in the page's
// address (so a filtered view can be bookmarked, shared and gone back to), and a paged list
// that fetches the first page when the filters change and appends on "Load more".

import { html, useEffect, useRef, useState } from './vendor/htm-preact-standalone.mjs';
import { isAbort } from './api.js';
import { navigate } from './router.js';
import { ErrorBox } from './ui.js';

// fields: [{name, label, type: 'text' | 'datetime-local' | 'select', options: [[value, label]]}]
// `params` is the URLSearchParams of the current address; submitting navigates to
// `basePath?<the non-empty fields>`.
export function FilterForm({ fields, params, basePath, label }) {
  const onSubmit = (event) => {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    const q = new URLSearchParams();
    for (const f of fields) {
      const v = String(data.get(f.name) || '').trim();
      if (v) q.set(f.name, v);
    }
    const s = q.toString();
    navigate(s ? `${basePath}?${s}` : basePath);
  };
  // Keyed by the address so that back/forward shows that address's values.
  return html`<form class="filters" role="search" aria-label=${label} onSubmit=${onSubmit} key=${params.toString()}>
    ${fields.map((f) => {
      const id = `f-${f.name}`;
      const value = params.get(f.name) || '';
      return html`<div class="field" key=${f.name}>
        <label for=${id}>${f.label}</label>
        ${f.type === 'select'
          ? html`<select id=${id} name=${f.name} defaultValue=${value}>
              ${f.options.map(([v, l]) => html`<option key=${v} value=${v} selected=${v === value}>${l}</option>`)}
              ${value && !f.options.some(([v]) => v === value) && html`<option value=${value} selected>${value}</option>`}
            </select>`
          : html`<input id=${id} name=${f.name} type=${f.type || 'text'} defaultValue=${value}
              autocomplete="off" spellcheck="false" />`}
      </div>`;
    })}
    <div class="field buttons">
      <button type="submit" class="btn btn-primary">Apply filters</button>
      <a href=${basePath} class="btn-link">Clear</a>
    </div>
  </form>`;
}

// fetchPage(pageToken, signal) -> {items, next}. Refetches from the start when `key` changes.
export function usePaged(fetchPage, key) {
  const [state, setState] = useState({ items: [], next: '', loading: true, error: null });
  const ctrlRef = useRef(null);
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;

  const run = async (token, append) => {
    if (ctrlRef.current) ctrlRef.current.abort(); // a newer request wins
    const ctrl = new AbortController();
    ctrlRef.current = ctrl;
    setState((s) => ({ ...s, items: append ? s.items : [], next: append ? s.next : '', loading: true, error: null }));
    try {
      const page = await fetchRef.current(token, ctrl.signal);
      if (ctrl.signal.aborted) return;
      setState((s) => ({ items: append ? s.items.concat(page.items) : page.items, next: page.next || '', loading: false, error: null }));
    } catch (err) {
      if (isAbort(err) || ctrl.signal.aborted) return;
      setState((s) => ({ ...s, loading: false, error: err }));
    }
  };

  useEffect(() => {
    run('', false);
    return () => ctrlRef.current && ctrlRef.current.abort();
  }, [key]);

  return { ...state, loadMore: () => state.next && run(state.next, true), retry: () => run('', false) };
}

// The list's status line, error and "Load more" button, under its table.
export function PagedFooter({ list, noun }) {
  return html`
    <p class="muted" role="status" aria-live="polite">
      ${list.loading ? `Loading ${noun}…` : list.error ? '' : `${list.items.length} ${noun} shown${list.next ? '' : ' (all)'}`}
    </p>
    <${ErrorBox} error=${list.error} title=${`Could not load the ${noun}`} />
    ${list.error && html`<p><button type="button" class="btn" onClick=${list.retry}>Try again</button></p>`}
    ${list.next && !list.loading && html`<p><button type="button" class="btn" data-testid="load-more" onClick=${list.loadMore}>Load more</button></p>`}`;
}

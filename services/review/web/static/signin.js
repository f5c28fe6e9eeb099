// The sign-in form: a graphmesh token or a JWT, checked with /api/me before it is kept (in
// sessionStorage only, see api.js).

import { html, useState } from './vendor/htm-preact-standalone.mjs';
import { api, setToken } from './api.js';
import { PageHeading, usePageTitle } from './ui.js';

export function SignIn({ message, onSignedIn }) {
  usePageTitle('Sign in');
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const onSubmit = async (event) => {
    event.preventDefault();
    const token = value.trim();
    if (!token) {
      setError('Enter a token or a JWT.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      const me = await api('/api/me', { token, signIn: true });
      setToken(token);
      onSignedIn(me);
    } catch (err) {
      setBusy(false);
      setError(err.message || 'The token was refused.');
    }
  };

  const shown = error || message;
  return html`<section class="signin card" aria-labelledby="signin-heading">
    <${PageHeading}><span id="signin-heading">Sign in</span></${PageHeading}>
    <p>Sign in with the graphmesh token or the JWT your mesh gives reviewers. It is kept only
      in this browser tab and forgotten when the tab closes.</p>
    <form onSubmit=${onSubmit} aria-describedby=${shown ? 'signin-error' : undefined}>
      <div class="field">
        <label for="signin-token">graphmesh token or JWT</label>
        <input id="signin-token" type="password" autocomplete="off" spellcheck="false"
          value=${value} onInput=${(e) => setValue(e.currentTarget.value)} />
      </div>
      <p id="signin-error" class="field-error" role="alert">${shown}</p>
      <button type="submit" class="btn btn-primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
  </section>`;
}

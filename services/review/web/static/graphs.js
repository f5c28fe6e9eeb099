// The graph names for filter menus (/api/graphs), fetched once per sign-in and shared by the
// pages; a failure leaves the menus with the graphs the page itself has seen.

import { useEffect, useState } from './vendor/htm-preact-standalone.mjs';
import { api } from './api.js';

let cached = null; // Promise<string[]>

export function forgetGraphs() {
  cached = null;
}

function load() {
  if (!cached) {
    cached = api('/api/graphs')
      .then((r) => (Array.isArray(r && r.graphs) ? r.graphs.map(String) : []))
      .catch(() => {
        cached = null; // try again on the next page
        return [];
      });
  }
  return cached;
}

export function useGraphNames() {
  const [graphs, setGraphs] = useState([]);
  useEffect(() => {
    let live = true;
    load().then((g) => live && setGraphs(g));
    return () => {
      live = false;
    };
  }, []);
  return graphs;
}

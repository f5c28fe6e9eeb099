// A stream read in two parts with LangGraph's JS SDK, as a browser client does after a dropped
// connection: runs.stream on a new thread, stop after a few events (the connection closes; the
// run goes on: onDisconnect "continue"), then runs.joinStream with the last event id seen. Once
// the run is done, the whole run is read again from the start (Last-Event-ID "-1"), so the caller
// can compare the two parts with one uninterrupted stream of the same run.
//
//   node stream_reconnect.mjs --url http://127.0.0.1:2024 --graph chat --message hello [--before 5]
//       [--join-url http://127.0.0.1:2025]   reconnect through another server (a second gateway replica)
//
// API key (optional): $LANGGRAPH_API_KEY, sent as X-Api-Key by the SDK.
// Prints one JSON object per line on stdout:
//   {"phase": "before" | "after" | "full", "event": ..., "id": ..., "data": ...}  one per SSE event
//   {"phase": "run", "thread_id": ..., "run_id": ..., "last_event_id": ..., "status": ...}
//   {"phase": "state", "values": ...}                               the thread's state at the end
// Exits non-zero (the error on stderr) if anything fails.
import { parseArgs } from "node:util";
import { Client } from "@langchain/langgraph-sdk";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    "join-url": { type: "string" },
    graph: { type: "string", default: "chat" },
    message: { type: "string", default: "hello" },
    before: { type: "string", default: "5" },
    "stream-mode": { type: "string", default: "values,messages-tuple" },
  },
});
if (!args.url) throw new Error("--url is required");
const streamMode = args["stream-mode"].split(",");
const before = Number(args.before);

const apiKey = process.env.LANGGRAPH_API_KEY ?? null;
const client = new Client({ apiUrl: args.url, apiKey });
const rejoin = new Client({ apiUrl: args["join-url"] ?? args.url, apiKey });
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const line = (phase, part) => emit({ phase, event: part.event, id: part.id ?? null, data: part.data });

async function main() {
  const thread = await client.threads.create();
  const threadId = thread.thread_id;
  let runId;
  let lastEventId;
  let seen = 0;
  const stream = client.runs.stream(threadId, args.graph, {
    input: { messages: [{ type: "human", content: args.message }] },
    streamMode,
    streamResumable: true, // the server keeps the run's events for joinStream
    onDisconnect: "continue", // the run outlives this first connection
    onRunCreated: (run) => { runId = run.run_id; },
  });
  for await (const part of stream) {
    line("before", part);
    if (part.event === "metadata") runId ??= part.data.run_id;
    if (part.id != null) lastEventId = part.id;
    seen += 1;
    if (seen >= before) break; // leaving the loop aborts the request: the connection drops
  }
  if (!runId) throw new Error("no run id: neither Content-Location nor a metadata event named the run");
  if (!lastEventId) throw new Error(`no event id in the first ${seen} events: the stream cannot be resumed`);

  // Like useStream's reconnect: no stream_mode filter, the run's own modes come back.
  for await (const part of rejoin.runs.joinStream(threadId, runId, { lastEventId })) {
    line("after", part);
  }

  const run = await client.runs.get(threadId, runId);
  emit({ phase: "run", thread_id: threadId, run_id: runId, last_event_id: lastEventId, status: run.status });

  // "-1": from the start, as useStream rejoins a run it finds on load.
  for await (const part of client.runs.joinStream(threadId, runId, { lastEventId: "-1" })) {
    line("full", part);
  }

  const state = await client.threads.getState(threadId);
  emit({ phase: "state", values: state.values });
}

// One line on stderr (the SDK's HTTPError message has the server's status and body), not a dump.
main().catch((error) => {
  process.stderr.write(`${error?.name ?? "Error"}: ${error?.message ?? error}\n`);
  process.exit(1);
});

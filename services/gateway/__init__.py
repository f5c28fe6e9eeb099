"""The LangGraph HTTP API gateway: a stateless HTTP process (Starlette) that serves the
LangGraph Agent Server API (what langgraph-sdk, RemoteGraph, agent-chat-ui and agent-inbox
speak) by calling graphmesh's gRPC services. It keeps no state of its own: any number of
replicas serve the same mesh (docs/langgraph-api.md)."""

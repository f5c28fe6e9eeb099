"""chat: a chat agent on MessagesState, answered by langchain-core's fake chat model.

The one node, `chat`, asks a GenericFakeChatModel for a reply derived from the last human
message, so runs are deterministic and need no provider, yet LangGraph's `messages` stream
mode yields real token chunks (AIMessageChunk, one per word and per space) that concatenate
to the final AIMessage. It is the graph the LangGraph HTTP API's tests drive the way
agent-chat-ui does (stream values, messages-tuple and custom; read history).

    input     {"messages": [{"role": "user", "content": "hello there"}]} (any LangChain message form)
    reply     "You said: hello there"; with the runtime context {"user_name": "Ann"}:
              "Ann, you said: hello there"; the configurable "reply_prefix" goes in front
    custom    {"status": "replying", "words": <words in the reply>} before the model streams
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime


@dataclass
class ChatContext:
    """The run's runtime context (LangGraph's context_schema): who is chatting."""

    user_name: str = ""


def reply_to(text: str, *, user_name: str = "", prefix: str = "") -> str:
    """The deterministic reply to a human message."""
    said = f"{user_name}, you said: {text}" if user_name else f"You said: {text}"
    return f"{prefix}{said}"


def _last_human_text(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human":
            return message.text if isinstance(message.text, str) else str(message.content)
    return ""


async def chat(state: MessagesState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict:
    context = runtime.context if isinstance(runtime.context, ChatContext) else ChatContext()
    prefix = str((config.get("configurable") or {}).get("reply_prefix") or "")
    reply = reply_to(_last_human_text(state["messages"]), user_name=context.user_name, prefix=prefix)
    get_stream_writer()({"status": "replying", "words": len(reply.split())})
    model = GenericFakeChatModel(messages=iter([AIMessage(content=reply)]))
    return {"messages": [await model.ainvoke(state["messages"], config)]}


graph = StateGraph(MessagesState, context_schema=ChatContext)
graph.add_node("chat", chat)
graph.add_edge(START, "chat")
graph.add_edge("chat", END)

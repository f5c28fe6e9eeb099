"""Runs endpoints of the LangGraph HTTP API (stub until the routes land)."""


def routes() -> list:
    return []

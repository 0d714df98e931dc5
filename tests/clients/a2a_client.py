"""The official A2A SDK (`a2a-sdk`, protocol v1.0) against a Caxton node.

usage: a2a_client.py BASE_URL API_KEY
Agents expected: `echo` (the echo provider, capability `echo`) and `slow`
(answers after a delay). Prints one JSON object with what the SDK saw;
tests/cluster/a2a.rs checks it.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, A2AClientError, AgentCardResolutionError, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict

BASE, KEY = sys.argv[1], sys.argv[2]
CARD = "/.well-known/agent-card.json"


def message(text, **meta):
    m = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if meta:
        m.metadata.update(meta)
    return SendMessageRequest(message=m)


def state(s):
    return TaskState.Name(s)


async def client_for(http, path, binding="JSONRPC", streaming=True):
    card = await A2ACardResolver(http, BASE, agent_card_path=f"{path}{CARD}").get_agent_card()
    config = ClientConfig(httpx_client=http, streaming=streaming, supported_protocol_bindings=[binding])
    return card, ClientFactory(config).create(card)


async def events(stream, first=None):
    out = []
    async for ev in stream:
        if first is not None:
            first.set()
        kind = ev.WhichOneof("payload")
        if kind == "task":
            out.append(["task", state(ev.task.status.state), ev.task.id])
        elif kind == "status_update":
            out.append(["status", state(ev.status_update.status.state)])
        elif kind == "artifact_update":
            out.append(["artifact", get_artifact_text(ev.artifact_update.artifact)])
        else:
            out.append([kind])
    return out


async def one_task(client, req):
    async for ev in client.send_message(req):
        return ev.task


async def main():
    out = {}
    async with httpx.AsyncClient(timeout=60) as anonymous:
        try:
            await A2ACardResolver(anonymous, BASE, agent_card_path=f"/a2a/agents/echo{CARD}").get_agent_card()
            out["card_without_key"] = "served"
        except AgentCardResolutionError as e:
            out["card_without_key"] = e.status_code
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card, plain = await client_for(http, "/a2a/agents/echo", streaming=False)
        out["card"] = MessageToDict(card)
        task = await one_task(plain, message("hello over a2a"))
        out["send"] = {"state": state(task.status.state), "answer": get_artifact_text(task.artifacts[0]),
                       "context": task.context_id, "id": task.id}
        again = await one_task(plain, message("same conversation", **{}))
        out["send_state_2"] = state(again.status.state)
        got = await plain.get_task(GetTaskRequest(id=task.id, history_length=1))
        out["get"] = {"state": state(got.status.state), "history": len(got.history),
                      "history_role": Role.Name(got.history[0].role) if got.history else None}
        try:
            await plain.cancel_task(CancelTaskRequest(id=task.id))
            out["cancel_done"] = "canceled"
        except TaskNotCancelableError as e:
            out["cancel_done"] = "not cancelable"
        try:
            await plain.get_task(GetTaskRequest(id="no-such-task"))
            out["get_unknown"] = "found"
        except TaskNotFoundError:
            out["get_unknown"] = "not found"

        _, streaming = await client_for(http, "/a2a/agents/echo")
        out["stream"] = await events(streaming.send_message(message("streamed over a2a")))

        _, rest = await client_for(http, "/a2a/agents/echo", binding="HTTP+JSON", streaming=False)
        rest_task = await one_task(rest, message("hello over rest"))
        out["rest"] = {"state": state(rest_task.status.state), "answer": get_artifact_text(rest_task.artifacts[0])}
        _, rest_stream = await client_for(http, "/a2a/agents/echo", binding="HTTP+JSON")
        out["rest_stream"] = await events(rest_stream.send_message(message("streamed over rest")))

        page = await plain.list_tasks(ListTasksRequest(page_size=2))
        rest_page = await plain.list_tasks(ListTasksRequest(page_size=2, page_token=page.next_page_token))
        out["list"] = {"first": [t.id for t in page.tasks], "total": page.total_size,
                       "second": [t.id for t in rest_page.tasks], "next": page.next_page_token != ""}

        router_card, router = await client_for(http, "", streaming=False)
        out["router_skills"] = sorted(s.id for s in router_card.skills)
        routed = await one_task(router, message("routed by skill", skill="echo"))
        out["routed"] = {"state": state(routed.status.state), "answer": get_artifact_text(routed.artifacts[0]),
                         "agent": MessageToDict(routed.metadata).get("agent")}

        # A slow task: canceled while a subscriber watches it.
        _, slow = await client_for(http, "/a2a/agents/slow")
        req = message("take your time")
        req.configuration.return_immediately = True
        _, slow_plain = await client_for(http, "/a2a/agents/slow", streaming=False)
        started = await one_task(slow_plain, req)
        out["slow_started"] = state(started.status.state)
        subscribed = asyncio.Event()
        watch = asyncio.create_task(events(slow.subscribe(SubscribeToTaskRequest(id=started.id)), subscribed))
        # Cancel once the subscriber holds the task (its first event).
        await asyncio.wait_for(subscribed.wait(), 30)
        canceled = await slow.cancel_task(CancelTaskRequest(id=started.id))
        out["canceled"] = state(canceled.status.state)
        out["subscriber_saw"] = await asyncio.wait_for(watch, 30)
        later = await slow.get_task(GetTaskRequest(id=started.id))
        out["canceled_later"] = state(later.status.state)

    async with httpx.AsyncClient(timeout=60) as anonymous:
        config = ClientConfig(httpx_client=anonymous, streaming=False)
        unauth = ClientFactory(config).create(card)
        try:
            await one_task(unauth, message("no key"))
            out["send_without_key"] = "accepted"
        except A2AClientError as e:
            out["send_without_key"] = getattr(getattr(e.__cause__, "response", None), "status_code", str(e))
    print(json.dumps(out))


asyncio.run(main())

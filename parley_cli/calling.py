"""``parley call``: the engine (or ingest) dials into a call with Symbl's Telephony API; the live transcript printed.

It starts the call (``POST /v1/endpoint:connect``), subscribes to the call's ``resultWebSocketUrl`` and prints what
is recognised as it comes, until the call ends (the far end hangs up, or Ctrl-C, which stops the call so the
conversation keeps everything heard).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

from parley_cli.streaming import StreamReport, describe_frame


@dataclass
class CallReport(StreamReport):
    connection_id: str | None = None
    ended: dict[str, Any] = field(default_factory=dict)


def call_body(target: str, *, name: str | None, dtmf: str | None) -> dict[str, Any]:
    """The start request for a SIP URI (``sip:…``) or a phone number (digits, through the engine's SIP trunk)."""
    if target.startswith(("sip:", "sips:")):
        endpoint: dict[str, Any] = {"type": "sip", "uri": target}
    else:
        endpoint = {"type": "pstn", "phoneNumber": target.lstrip("+")}
        if dtmf:
            endpoint["dtmf"] = dtmf
    body: dict[str, Any] = {"operation": "start", "endpoint": endpoint, "insightTypes": ["question", "action_item"]}
    if name:
        body["data"] = {"session": {"name": name}}
    return body


async def call_and_follow(
    api_url: str, target: str, *, token: str, name: str | None = None, dtmf: str | None = None, show: Any = print
) -> CallReport:
    report = CallReport()
    headers = {"x-api-key": token}
    async with httpx.AsyncClient(base_url=api_url.rstrip("/"), headers=headers, timeout=30) as http:
        started = await http.post("/v1/endpoint:connect", json=call_body(target, name=name, dtmf=dtmf))
        if started.status_code != 201:
            message = started.json().get("message") if started.content else started.reason_phrase
            report.errors.append(f"{started.status_code}: {message}")
            show(f"error: the call was not started ({started.status_code}): {message}")
            return report
        body = started.json()
        report.connection_id, report.conversation_id = body["connectionId"], str(body["conversationId"])
        show(f"calling {target}: conversation {report.conversation_id} (connection {report.connection_id})")
        try:
            async with websockets.connect(
                body["resultWebSocketUrl"], additional_headers=headers, compression=None
            ) as results:
                async for text in results:
                    frame = json.loads(text) if isinstance(text, str) and text.startswith("{") else None
                    if frame is None:
                        continue
                    message = frame.get("message") or {}
                    if frame.get("type") == "message" and message.get("type") == "call_ended":
                        report.ended = message.get("data") or {}
                        show(f"call ended: {report.ended.get('reason')}")
                        continue
                    line = describe_frame(frame, report)
                    if line is not None:
                        show(line)
                report.close_code = results.close_code
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            # Ctrl-C: hang up, so the far end is released and the conversation keeps what was heard.
            report.interrupted = True
            await http.post("/v1/endpoint:connect", json={"operation": "stop", "connectionId": report.connection_id})
    return report

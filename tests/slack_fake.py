"""A Slack-compatible Web API on a local port, for the tests and the benchmark: it answers the
methods the platform calls (auth.test, users.lookupByEmail, users.info, chat.postMessage,
chat.update, chat.postEphemeral) as Slack does, with form, query or JSON bodies as slack-sdk
sends them, refuses a wrong token, and keeps every call it was sent. It knows the demo's
people and one Slack user whom no console user matches; ``press`` makes the signed button
press Slack would post to the platform."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"

KNOWN_PEOPLE = {
    "U0OPERATOR": "operator@example.com",
    "U0AUDITOR": "auditor@example.com",
    "U0POLICYOWNER": "policy-owner@example.com",
    "U0STRANGER": "stranger@elsewhere.example",  # no console user has this address
}


@dataclass
class Call:
    method: str
    args: dict

    def __getitem__(self, name: str):
        return self.args[name]

    def get(self, name: str, default=None):
        return self.args.get(name, default)


class SlackServer:
    def __init__(self, *, token: str = TOKEN, host: str = "127.0.0.1") -> None:
        self.token = token
        self.people = dict(KNOWN_PEOPLE)
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) → the message as it is
        # Methods answered 429 "ratelimited", with Retry-After this many seconds, as Slack does.
        self.rate_limited: dict[str, int] = {}
        # Called once, with its arguments, when the next chat.update arrives, before Slack has
        # it: what happens elsewhere while an update is on its way.
        self.while_next_update: Callable[[dict], None] | None = None
        # Likewise for the next chat.postMessage: what happens while a message is on its way.
        self.while_next_post: Callable[[dict], None] | None = None
        # The units a message's blocks' texts may add up to (``blocks_units``), past which it
        # is refused msg_blocks_too_long: lower, a Slack that counts more strictly.
        self.blocks_text_limit = MAX_BLOCKS_TEXT
        self._stamps = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer(urllib.parse.urlsplit(self.path).query, "")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(urllib.parse.urlsplit(self.path).query, body.decode())

            def _answer(self, query: str, body: str) -> None:
                method = urllib.parse.urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
                args = {k: v for k, v in urllib.parse.parse_qsl(query)}
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args |= json.loads(body or "{}")
                elif body:
                    args |= dict(urllib.parse.parse_qsl(body))
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if method in server.rate_limited:
                    answer, status = {"ok": False, "error": "ratelimited"}, 429
                else:
                    answer = server.answer(method, args, token=args.pop("token", None) or bearer)
                    status = 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(server.rate_limited[method]))
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = type("Server", (ThreadingHTTPServer,), {"address_family": family})(
            (host, 0), Handler
        )
        self.url = f"http://{host}:{self.server.server_port}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # What the platform may ask.

    def answer(self, method: str, args: dict, *, token: str) -> dict:
        if token != self.token:
            return {"ok": False, "error": "invalid_auth" if token else "not_authed"}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        if method == "chat.update" and self.while_next_update:
            meanwhile, self.while_next_update = self.while_next_update, None
            meanwhile(args)
        if method == "chat.postMessage" and self.while_next_post:
            meanwhile, self.while_next_post = self.while_next_post, None
            meanwhile(args)
        with self._lock:
            self.calls.append(Call(method, args))
            return handler(args)

    def _auth_test(self, args: dict) -> dict:
        return {"ok": True, "user_id": "U0HITLBOT", "team_id": "T0TEST", "team": "Test"}

    def _users_lookupByEmail(self, args: dict) -> dict:
        email = args.get("email", "").lower()
        for user_id, address in self.people.items():
            if address.lower() == email:
                return {"ok": True, "user": self._user(user_id)}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, args: dict) -> dict:
        if args.get("user") not in self.people:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": self._user(args["user"])}

    def _user(self, user_id: str) -> dict:
        email = self.people[user_id]
        name = email.split("@")[0]
        return {"id": user_id, "name": name, "profile": {"email": email, "real_name": name}}

    def _chat_postMessage(self, args: dict) -> dict:
        refused = blocks_refusal(args.get("blocks"), text_limit=self.blocks_text_limit)
        if refused:
            return {"ok": False, "error": refused}
        channel = self._dm_channel(args.get("channel", ""))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        ts = self._ts()
        self.messages[(channel, ts)] = {"text": args.get("text"), "blocks": args.get("blocks")}
        return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}}

    def _chat_update(self, args: dict) -> dict:
        refused = blocks_refusal(args.get("blocks"), text_limit=self.blocks_text_limit)
        if refused:
            return {"ok": False, "error": refused}
        key = (args.get("channel", ""), args.get("ts", ""))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key] = {"text": args.get("text"), "blocks": args.get("blocks")}
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _chat_postEphemeral(self, args: dict) -> dict:
        if args.get("user") not in self.people:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._ts()}

    def _dm_channel(self, channel: str) -> str | None:
        if channel.startswith("U"):
            return "D" + channel[1:] if channel in self.people else None
        return channel or None

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._stamps):06d}"

    # What a test reads.

    def user_id(self, email: str) -> str:
        return next(uid for uid, address in self.people.items() if address == email)

    def sent(self, method: str, **matching) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [
            call
            for call in calls
            if call.method == method and all(call.get(k) == v for k, v in matching.items())
        ]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.people = dict(KNOWN_PEOPLE)
            self.rate_limited.clear()
            self.while_next_update = None
            self.while_next_post = None
            self.blocks_text_limit = MAX_BLOCKS_TEXT

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Slack's Block Kit limits (api.slack.com/reference/block-kit), counted in UTF-16 units as the
# platform assumes Slack may count them: a message Slack refuses for breaking one is answered
# ``invalid_blocks``, as Slack does.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_TEXT = 3000
MAX_BUTTON_VALUE = 2000
MAX_OPTION_VALUE = 150
# And one it does not document: a message whose blocks' texts add up to about 12,000
# characters is refused msg_blocks_too_long (github.com/slackapi/bolt-js/issues/2509 and
# 2867; Slack's engineer: "12,000 text characters with a buffer for block containers").
MAX_BLOCKS_TEXT = 12_000


def units(text: str) -> int:
    """A text's length as Slack may count its limits: in UTF-16 units (an emoji is two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def blocks_refusal(blocks, *, text_limit: int = MAX_BLOCKS_TEXT) -> str:
    """ "invalid_blocks" if ``blocks`` break one of Slack's limits for a block,
    "msg_blocks_too_long" if their texts add up to more than ``text_limit`` units, else ""."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks or "[]")
    if not blocks:
        return ""
    if _breaks_a_block_limit(blocks):
        return "invalid_blocks"
    return "msg_blocks_too_long" if blocks_units(blocks) > text_limit else ""


def blocks_units(value) -> int:
    """Every text in a message's blocks (a text object's, a rich text element's, a date's
    fallback, a button's, an option's), added up in UTF-16 units (an emoji is two)."""
    if isinstance(value, dict):
        return sum(
            units(said)
            if name in ("text", "fallback") and isinstance(said, str)
            else blocks_units(said)
            for name, said in value.items()
        )
    if isinstance(value, list):
        return sum(blocks_units(said) for said in value)
    return 0


def _breaks_a_block_limit(blocks: list[dict]) -> bool:
    too_long = [
        len(blocks) > MAX_BLOCKS,
        *(
            units(block.get("text", {}).get("text", "")) > MAX_SECTION_TEXT
            or len(block.get("fields", [])) > MAX_FIELDS
            or any(
                units(field.get("text", "")) > MAX_FIELD_TEXT for field in block.get("fields", [])
            )
            for block in blocks
            if block.get("type") == "section"
        ),
        *(
            units(element.get("text", "")) > MAX_CONTEXT_TEXT
            for block in blocks
            if block.get("type") == "context"
            for element in block.get("elements", [])
        ),
        *(
            not _rich_text_as_slack_takes(block)
            for block in blocks
            if block.get("type") == "rich_text"
        ),
        *(
            len(element.get("value", "")) > MAX_BUTTON_VALUE
            or any(len(o.get("value", "")) > MAX_OPTION_VALUE for o in element.get("options", []))
            for block in blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ),
    ]
    return any(too_long)


RICH_TEXT_STYLES = {"bold", "italic", "strike", "code"}


def _rich_text_as_slack_takes(block: dict) -> bool:
    """Whether a rich text block is one Slack takes: sections of text, links and dates (the
    elements the platform sends), each text a string, each date a whole number of seconds
    and a format, each style one Slack knows."""
    sections = block.get("elements")
    if not isinstance(sections, list) or not sections:
        return False
    for section in sections:
        if section.get("type") != "rich_text_section" or not section.get("elements"):
            return False
        for element in section["elements"]:
            if element.get("type") == "date":
                if not isinstance(element.get("timestamp"), int) or not isinstance(
                    element.get("format"), str
                ):
                    return False
            elif element.get("type") not in ("text", "link") or not isinstance(
                element.get("text"), str
            ):
                return False
            if element["type"] == "link" and not str(element.get("url", "")).startswith("http"):
                return False
            if set(element.get("style", {})) - RICH_TEXT_STYLES:
                return False
    return True


def shown_text(blocks: list[dict]) -> str:
    """What a message's blocks show a person, as words: a section's text and fields, a
    context's elements, a rich text block's elements (a link by its text, a date by its
    fallback, as written in the console's zone), one block a line."""
    shown = []
    for block in blocks:
        if block.get("type") == "section":
            texts = [block.get("text", {}), *block.get("fields", [])]
            shown.append("\n".join(text["text"] for text in texts if text))
        elif block.get("type") == "context":
            shown.append(" ".join(element.get("text", "") for element in block["elements"]))
        elif block.get("type") == "rich_text":
            shown.append(
                "".join(
                    element.get("text", element.get("fallback", ""))
                    for section in block["elements"]
                    for element in section["elements"]
                )
            )
    return "\n".join(shown)


def press(
    *,
    user_id: str,
    action_id: str,
    value: str,
    channel: str = "",
    message_ts: str = "",
    signing_secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a block_actions request, as Slack posts a button press (or a
    choice from a menu: ``value`` is then the option's), signed with ``signing_secret``."""
    action = {"action_id": action_id, "block_id": "proposal", "action_ts": str(time.time())}
    if action_id == "reject":
        action |= {"type": "static_select", "selected_option": {"value": value}}
    else:
        action |= {"type": "button", "value": value}
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0TEST"},
        "team": {"id": "T0TEST"},
        "channel": {"id": channel or "D" + user_id[1:]},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts},
        "response_url": "https://hooks.slack.invalid/actions/T0TEST/1/x",
        "trigger_id": "1.2.3",
        "actions": [action],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    return body, signed_headers(body, signing_secret=signing_secret, timestamp=timestamp)


def signed_headers(
    body: bytes, *, signing_secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def markup(blocks) -> list[str]:
    """Every text in ``blocks`` that Slack reads as its markup (mrkdwn)."""
    if isinstance(blocks, dict):
        found = [blocks["text"]] if blocks.get("type") == "mrkdwn" else []
        return found + [text for value in blocks.values() for text in markup(value)]
    if isinstance(blocks, list):
        return [text for value in blocks for text in markup(value)]
    return []

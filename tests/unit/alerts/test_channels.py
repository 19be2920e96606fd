"""Channels against real local servers: an HTTP receiver (webhook, SMS gateway), an SMTP
server (aiosmtpd) and Mosquitto; and the outbox dispatcher retrying a channel that is down
and giving up, with a history entry, on one that will never accept."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels import ChannelError, Notification
from alerts.channels.email import EmailChannel
from alerts.channels.mqtt import MqttChannel
from alerts.channels.sms import SmsChannel, render_request
from alerts.channels.webhook import WebhookChannel, sign, verify
from alerts.dispatcher import Dispatcher
from alerts.lifecycle import apply_event
from alerts.models import ContactGroup, History, Outbox, Policy
from stationflow.bench.receiver import WebhookReceiver
from stationflow.stack.components import Component
from stationflow.stack.ports import free_port
from tests.unit.alerts.conftest import CONSOLE, T0, event

NOTE = Notification(
    id="5f0c",
    channel="webhook",
    target="",
    kind="raised",
    title="[ALERT] MAJOR flood.level at gauge-1",
    title_zh="【告警】橙色 flood.level gauge-1",
    body='level "13.2" m\n水位 13.2 米',
    payload={"alert_id": "flood.level:device:lvl-1", "station_id": "gauge-1", "value": 13.2},
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(free_port()) as r:
        yield r


def _note(**kw: Any) -> Notification:
    return dataclasses.replace(NOTE, **kw)


async def test_webhook_body_is_signed_and_carries_the_notification_id(receiver: WebhookReceiver) -> None:
    channel = WebhookChannel(b"s3cret")
    try:
        await channel.send(_note(target=f"{receiver.url}/hook"))
    finally:
        await channel.aclose()
    (got,) = receiver.snapshot()
    assert verify(b"s3cret", got.body, got.headers["x-stationflow-signature"])
    assert not verify(b"other", got.body, got.headers["x-stationflow-signature"])
    assert not verify(b"s3cret", got.body + b" ", got.headers["x-stationflow-signature"])
    doc = orjson.loads(got.body)
    assert doc["notification_id"] == got.headers["x-stationflow-notification-id"] == "5f0c"
    assert doc["alert_id"] == "flood.level:device:lvl-1" and doc["title_zh"].startswith("【告警】")


async def test_webhook_errors_say_whether_to_retry(receiver: WebhookReceiver) -> None:
    channel = WebhookChannel(b"k", timeout_s=2)
    try:
        for code, retry in ((503, True), (429, True), (404, False), (400, False)):
            receiver.status = code
            with pytest.raises(ChannelError) as err:
                await channel.send(_note(target=receiver.url))
            assert err.value.retriable is retry and str(code) in str(err.value)
        receiver.stop()
        with pytest.raises(ChannelError) as err:
            await channel.send(_note(target=receiver.url))
        assert err.value.retriable and "unreachable" in str(err.value)
        with pytest.raises(ChannelError) as err:
            await channel.send(_note(target="not a url"))
        assert not err.value.retriable
    finally:
        await channel.aclose()


@given(st.text(max_size=200), st.text(max_size=30))
def test_sms_template_escapes_any_text(text: str, to: str) -> None:
    body = render_request('{"phone": "{to}", "content": "{text}", "sign": "防汛"}', to=to, text=text)
    assert json.loads(body) == {"phone": to, "content": text, "sign": "防汛"}


async def test_sms_goes_to_the_gateway_with_the_configured_template(receiver: WebhookReceiver) -> None:
    channel = SmsChannel(
        f"{receiver.url}/sms", '{"mobile": "{to}", "msg": "{text}"}', headers={"X-Token": "t"}
    )
    try:
        await channel.send(_note(channel="sms", target="+8613800000000"))
        bad = SmsChannel(f"{receiver.url}/sms", '{"mobile": {to}}')
        with pytest.raises(ChannelError) as err:
            await bad.send(_note(channel="sms", target="+86138"))
        assert not err.value.retriable
        await bad.aclose()
    finally:
        await channel.aclose()
    (got,) = receiver.snapshot()
    assert got.path == "/sms" and got.headers["x-token"] == "t"
    sent = json.loads(got.body)
    assert sent["mobile"] == "+8613800000000" and sent["msg"].startswith("【告警】橙色")


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


async def test_email_is_delivered_to_a_real_smtp_server() -> None:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = EmailChannel(host="127.0.0.1", port=port, sender="alerts@bureau.example")
        await channel.send(_note(channel="email", target="duty@bureau.example"))
    finally:
        controller.stop()
    (raw,) = inbox.messages
    msg = message_from_bytes(raw)
    assert msg["To"] == "duty@bureau.example" and msg["X-Stationflow-Notification-Id"] == "5f0c"
    assert "橙色" in str(make_header(decode_header(msg["Subject"])))
    assert "水位 13.2 米" in msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    down = EmailChannel(host="127.0.0.1", port=free_port(), sender="a@b", timeout_s=2)
    with pytest.raises(ChannelError) as err:
        await down.send(_note(channel="email", target="x@y"))
    assert err.value.retriable


async def test_mqtt_channel_publishes_to_the_station_topic(mosquitto: Component) -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe("stations/+/alerts", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: got.append((m.topic, orjson.loads(m.payload)))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    channel = MqttChannel(mosquitto.host, mosquitto.port, client_id="test-alerts-channel")
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        for _ in range(50):  # connects in the background
            if channel._connected.is_set():
                break
            await asyncio.sleep(0.1)
        await channel.send(_note(channel="mqtt", target="stations/{station}/alerts"))
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
    finally:
        await channel.aclose()
        sub.loop_stop()
        sub.disconnect()
    ((topic, doc),) = got
    assert topic == "stations/gauge-1/alerts" and doc["notification_id"] == "5f0c" and doc["value"] == 13.2
    offline = MqttChannel("127.0.0.1", free_port(), client_id="nobody")
    with pytest.raises(ChannelError):
        await offline.send(_note(channel="mqtt", target="stations/x/alerts"))
    await offline.aclose()


def _queue(sessions: sessionmaker[Session], target: str, n: int) -> None:
    with sessions() as s:
        s.add(ContactGroup(name="duty", members=[{"channel": "webhook", "target": target}]))
        s.add(Policy(name="all", groups=["duty"], ack_timeout_s=600))
        s.commit()
        for i in range(n):
            apply_event(s, event(alert_id=f"a{i}", device=f"d{i}"), now=T0, console_url=CONSOLE)
        s.commit()


def _dispatcher(sessions: sessionmaker[Session], **kw: Any) -> Dispatcher:
    args: dict[str, Any] = {
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "max_attempts": 0,
        "send_timeout_s": 2,
        "concurrency": 4,
    }
    return Dispatcher(sessions, {"webhook": WebhookChannel(b"k", timeout_s=2)}, **{**args, **kw})


async def test_dispatcher_keeps_retrying_a_down_channel_and_delivers_each_once(
    sessions: sessionmaker[Session], receiver: WebhookReceiver
) -> None:
    _queue(sessions, f"{receiver.url}/duty", 5)
    receiver.stop()
    dispatcher = _dispatcher(sessions)
    for _ in range(10):
        await dispatcher.run_once()
        await asyncio.sleep(0.1)
    with sessions() as s:
        rows = list(s.scalars(select(Outbox)))
        assert {r.status for r in rows} == {"pending"} and min(r.attempts for r in rows) >= 2
        assert "unreachable" in (rows[0].last_error or "")
    receiver.start()
    for _ in range(20):
        await dispatcher.run_once()
        await asyncio.sleep(0.1)
    ids = [orjson.loads(r.body)["notification_id"] for r in receiver.snapshot()]
    assert len(ids) == 5 and len(set(ids)) == 5
    with sessions() as s:
        assert {r.status for r in s.scalars(select(Outbox))} == {"sent"}


async def test_dispatcher_gives_up_on_a_permanent_refusal_and_records_why(
    sessions: sessionmaker[Session], receiver: WebhookReceiver
) -> None:
    _queue(sessions, f"{receiver.url}/gone", 1)
    receiver.status = 410
    dispatcher = _dispatcher(sessions)
    for _ in range(3):
        await dispatcher.run_once()
        await asyncio.sleep(0.1)
    with sessions() as s:
        row = s.scalars(select(Outbox)).one()
        assert (row.status, row.attempts) == ("failed", 1) and "410" in (row.last_error or "")
        failed = s.scalars(select(History).where(History.what == "notification_failed")).one()
        assert failed.detail["channel"] == "webhook"


async def test_an_unknown_channel_fails_with_a_reason(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        s.add(ContactGroup(name="duty", members=[{"channel": "pager", "target": "123"}]))
        s.add(Policy(name="all", groups=["duty"]))
        s.commit()
        apply_event(s, event(), now=datetime.now(UTC), console_url=CONSOLE)
        s.commit()
    await _dispatcher(sessions).run_once()
    with sessions() as s:
        row = s.scalars(select(Outbox)).one()
        assert row.status == "failed" and "no channel named 'pager'" in (row.last_error or "")


def test_signature_helper_matches_hmac_sha256() -> None:
    import hashlib
    import hmac

    assert sign(b"k", b"body") == "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest()

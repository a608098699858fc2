"""The channels that carry notifications, by the name a notification records: one class
each (``notifications.channels.Channel``), Slack's in a module of its own."""

from notifications.channels import Channel, EmailChannel
from notifications.slack import SlackChannel

CHANNELS: dict[str, type[Channel]] = {"email": EmailChannel, "slack": SlackChannel}


def channel_for(name: str) -> Channel:
    return CHANNELS[name]()

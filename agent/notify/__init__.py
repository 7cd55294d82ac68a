"""Notifications: ticket events to WeCom, DingTalk, e-mail and webhooks (see notifier.py)."""

from agent.notify.channels import DeliveryError, dingtalk_sign
from agent.notify.model import (
                                Channel,
                                Channels,
                                DingTalkChannel,
                                EmailChannel,
                                Message,
                                WebhookChannel,
                                WeComChannel,
)
from agent.notify.notifier import (
                                DeadLetter,
                                JsonlDeadLetters,
                                MemoryDeadLetters,
                                Notifier,
                                TokenBucket,
)
from agent.notify.render import Rendered, Renderer

__all__ = ["Channel", "Channels", "DeadLetter", "DeliveryError", "DingTalkChannel",
           "EmailChannel", "JsonlDeadLetters", "MemoryDeadLetters", "Message", "Notifier",
           "Rendered", "Renderer", "TokenBucket", "WeComChannel", "WebhookChannel",
           "dingtalk_sign"]

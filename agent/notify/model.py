"""What a notification says (`Message`) and where it goes (channel configs).

Channel configs are meant for the escalation policy's tiers (`config/escalation.yaml`, each
tier naming its channels). Every key is documented with `Field(description=...)` like
`agent/settings.py`. Secrets may be written inline or read from an environment variable
(`<key>_env: VARIABLE`, the convention of agent/credentials.py).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, model_validator

from agent.configbase import Duration, Strict
from agent.validation import parse_duration

ZeroOrDuration = Annotated[
    float, BeforeValidator(lambda v: 0.0 if v in (0, "0", "0s") else parse_duration(v))]
"""A duration ('10s', '1m') or 0 for none."""

Kind = Literal["opened", "escalated", "resolved", "storm"]
Language = Literal["zh", "en"]


class Message(BaseModel):
    """One ticket event to tell people about; the facts the templates format."""

    model_config = ConfigDict(frozen=True)

    kind: Kind = Field(..., description="opened, escalated, resolved (storm is made by the "
                                        "notifier from many messages).")
    key: str = Field(..., description="The fault key (also the ticket's key); receivers "
                                      "deduplicate on it.")
    seq: int = Field(0, description="Which message of this kind for the ticket: the breach "
                                    "number of an escalation, the reopen count of an opening, "
                                    "the timeline event of a resolution. Receivers "
                                    "deduplicate on (key, kind, seq).")
    ticket: str = Field("", description="Ticket id or number, if one exists yet.")
    site: str = Field(..., description="Site id.")
    site_name: str = Field("", description="Human name of the site, e.g. 东湖社区.")
    device: str = Field(..., description="Device id.")
    device_name: str = Field("", description="Human name of the device.")
    level: int = Field(..., ge=1, le=4, description="Fault level 1-4 (1 the most severe).")
    what_zh: str = Field(..., description="What is wrong, in Chinese.")
    what_en: str = Field("", description="What is wrong, in English (Chinese if empty).")
    since: datetime = Field(..., description="When the fault began.")
    deadline: datetime | None = Field(None, description="Time limit: by when it must be "
                                      "responded to or repaired (the contract's limit).")
    link: str = Field("", description="URL of the ticket or fault for details.")
    at: float = Field(0.0, description="Unix time the event happened (the notifier's clock "
                                       "if 0).")

    def what(self, lang: Language) -> str:
        return self.what_en if lang == "en" and self.what_en else self.what_zh


class ChannelBase(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                      description="Name of the channel, used by the escalation tiers, in "
                                  "metrics and in dead-letter records.")
    language: Language = Field("zh", description="Language of the messages: zh or en.")
    timeout: Duration = Field(10.0, gt=0, description="Seconds for one delivery attempt.")
    attempts: int = Field(4, ge=1, le=20,
                          description="Delivery attempts before the message is dead-lettered.")
    backoff: ZeroOrDuration = Field(
        1.0, ge=0, description="Wait before the second attempt, doubled before each further one.")
    max_backoff: ZeroOrDuration = Field(60.0, ge=0, description="Longest wait between attempts.")
    rate_per_minute: float = Field(
        20.0, gt=0, description="Sustained messages per minute (token bucket). WeCom and "
                                "DingTalk robots accept at most 20 per minute.")
    burst: int = Field(5, ge=1, description="Messages that may go at once before the rate "
                                            "applies (bucket size).")
    storm_window: ZeroOrDuration = Field(
        10.0, ge=0, description="Messages of one kind are held this long and, when "
                                "`storm_threshold` or more arrived, go as one storm message. "
                                "0 sends every message at once (no aggregation).")
    storm_threshold: int = Field(5, ge=2, description="Messages of one kind within "
                                                      "`storm_window` that make a storm.")
    storm_list: int = Field(10, ge=1, description="Faults listed by name in a storm message.")


class WeComChannel(ChannelBase):
    """WeCom (企业微信) group robot."""

    type: Literal["wecom"] = Field(..., description="`wecom`: WeCom group robot.")
    key: str | None = Field(None, description="The robot webhook's `key` parameter.")
    key_env: str | None = Field(None, description="Environment variable holding the key.")
    api_base: str = Field("https://qyapi.weixin.qq.com",
                          description="API origin; change only for a forwarding proxy.")

    @model_validator(mode="after")
    def _one_key(self) -> WeComChannel:
        _exactly_one(self.key, self.key_env, "key")
        return self


class DingTalkChannel(ChannelBase):
    """DingTalk (钉钉) custom robot, with its signature (加签) when a secret is set."""

    type: Literal["dingtalk"] = Field(..., description="`dingtalk`: DingTalk robot.")
    access_token: str | None = Field(None, description="The robot's `access_token`.")
    access_token_env: str | None = Field(None, description="Environment variable holding it.")
    secret: str | None = Field(None, description="The robot's signing secret (SEC...).")
    secret_env: str | None = Field(None, description="Environment variable holding it.")
    api_base: str = Field("https://oapi.dingtalk.com",
                          description="API origin; change only for a forwarding proxy.")

    @model_validator(mode="after")
    def _one_token(self) -> DingTalkChannel:
        _exactly_one(self.access_token, self.access_token_env, "access_token")
        return self


class EmailChannel(ChannelBase):
    """E-mail over SMTP (sent through apprise)."""

    type: Literal["email"] = Field(..., description="`email`: e-mail over SMTP.")
    host: str = Field(..., description="SMTP server host.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 TLS).")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls, ssl (TLS from the start) or none (plain text; "
                                "only for a relay on the same host or network).")
    user: str | None = Field(None, description="SMTP login user; no login if unset.")
    password_env: str | None = Field(None, description="Environment variable holding the "
                                                       "SMTP password.")
    verify_tls: bool = Field(
        True, description="Check the server's certificate and host name (starttls, ssl) "
                          "against the system's trusted CAs; a private CA goes into the "
                          "system store (Debian: /usr/local/share/ca-certificates/, then "
                          "update-ca-certificates). false accepts any certificate, so whoever "
                          "can intercept the connection reads the password: only for a "
                          "self-signed server on a network you trust.")
    sender: str = Field(..., alias="from", description="From address.")
    to: list[str] = Field(..., min_length=1, description="Recipient addresses.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookChannel(ChannelBase):
    """A generic HTTP webhook: JSON POST of the message facts, or Alertmanager's webhook
    payload (version 4) for receivers written for Alertmanager."""

    type: Literal["webhook"] = Field(..., description="`webhook`: HTTP webhook.")
    url: str = Field(..., description="URL to POST to.")
    format: Literal["json", "alertmanager"] = Field(
        "json", description="json (Vigil's message facts and the rendered text) or "
                            "alertmanager (Alertmanager webhook payload, version 4).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")


Channel = Annotated[WeComChannel | DingTalkChannel | EmailChannel | WebhookChannel,
                    Discriminator("type")]


class Channels(BaseModel):
    """A list of channels as read from YAML."""

    channels: list[Channel] = Field(default_factory=list)


def _exactly_one(value: str | None, env: str | None, key: str) -> None:
    if (value is None) == (env is None):
        raise ValueError(f"set exactly one of `{key}` and `{key}_env`")


def secret(value: str | None, env: str | None) -> str | None:
    """The inline value, or the environment variable's (error if it is not set)."""
    if env is None:
        return value
    found = os.environ.get(env)
    if found is None:
        raise LookupError(f"environment variable {env} is not set")
    return found

"""Tables of the readings history (in the ticket store's database, on its `Base`).

Rows are summaries, never raw readings: per series (device, metric and labels) one row per
bucket (`history.interval`, 5 minutes by default) and one per local day; per device and
collector the seconds it was up, down and unknown. Every table's primary key is its natural
key (series, bucket), so writing a bucket again replaces it (an idempotent upsert): a retry
or a restart never counts a bucket twice. A series' `labels` is the canonical JSON of the
reading's labels (sorted keys, no spaces; `{}` for none), so it can be compared and indexed
as text on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agent.tickets.models import Base, UtcDateTime

DEVICE_COLLECTOR = "device"
"""The `collector` of a device's own availability row: the state of its management protocol
(SNMP, else ONVIF, RTSP, reachability), as `vigil_device_up` exports it."""


class Series(Base):
    """One series: a device's metric with one label set. Bucket and daily rows refer to it by
    its integer id, so they do not repeat three strings each (a third of the bytes per row:
    docs/history.md)."""

    __tablename__ = "history_series"
    __table_args__ = (UniqueConstraint("device", "metric", "labels",
                                       name="uq_history_series"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(128))
    labels: Mapped[str] = mapped_column(Text)


class ReadingBucket(Base):
    __tablename__ = "history_readings"
    __table_args__ = (Index("ix_history_readings_start", "start"),)

    series: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    seconds: Mapped[int] = mapped_column(Integer)  # width of the bucket
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    sum: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class ReadingDay(Base):
    __tablename__ = "history_readings_daily"
    __table_args__ = (Index("ix_history_readings_daily_day", "day"),)

    series: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # in `history.timezone`
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    sum: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class AvailabilityBucket(Base):
    __tablename__ = "history_availability"
    __table_args__ = (Index("ix_history_availability_start", "start"),
                      Index("ix_history_availability_site_start", "site", "start"))

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    collector: Mapped[str] = mapped_column(String(32), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    seconds: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    up_seconds: Mapped[float] = mapped_column(Float)
    down_seconds: Mapped[float] = mapped_column(Float)
    unknown_seconds: Mapped[float] = mapped_column(Float)


class AvailabilityDay(Base):
    __tablename__ = "history_availability_daily"
    __table_args__ = (Index("ix_history_availability_daily_day", "day"),
                      Index("ix_history_availability_daily_site_day", "site", "day"))

    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    collector: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    up_seconds: Mapped[float] = mapped_column(Float)
    down_seconds: Mapped[float] = mapped_column(Float)
    unknown_seconds: Mapped[float] = mapped_column(Float)


class RolledDay(Base):
    """A local day whose daily rows an agent has written for its devices (its catch-up at
    start begins after the latest one). Per agent: agents sharing a centre's store each roll
    up their own devices once their own last bucket of the day is written."""

    __tablename__ = "history_days"

    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rolled_at: Mapped[datetime] = mapped_column(UtcDateTime)

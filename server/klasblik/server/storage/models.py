"""Database models (SQLAlchemy 2). Schema changes go through Alembic (``engine.py`` runs it).

Only what ``docs/privacy.md`` lists is stored. Per student: display name (first name +
surname initial), Microsoft 365 username, school, location, classes, last IP address.
Per staff member: name, Microsoft 365 username, school, last IP address. Screens and tabs
are never in the database: the latest of each is one blob (see ``blobs/``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AgentDevice",
    "AuditEntry",
    "Base",
    "CaptureBlock",
    "GoogleAccount",
    "JobRun",
    "Location",
    "PendingLogin",
    "RemoteMode",
    "School",
    "SchoolClass",
    "Staff",
    "Student",
    "SyncState",
    "WebSession",
    "class_students",
    "class_teachers",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stored: dt.datetime = value
        return stored.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


#: SQLite hands out the id of a deleted last row again unless the table is AUTOINCREMENT;
#: a reused student id would give a new child the audit trail of a purged one. PostgreSQL
#: sequences never go back. (Migration i14_no_id_reuse.)
_NO_ID_REUSE: dict[str, Any] = {"sqlite_autoincrement": True}


class_students = Table(
    "class_students",
    Base.metadata,
    Column("class_id", ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
    Column("student_id", ForeignKey("students.id", ondelete="CASCADE"), primary_key=True),
)

class_teachers = Table(
    "class_teachers",
    Base.metadata,
    Column("class_id", ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
)


class School(Base):
    __tablename__ = "schools"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    brin: Mapped[str] = mapped_column(String(8), unique=True)
    m365_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: How this school's agents prove who they are: verified, device or token; None: the
    #: ``agent_identity`` setting.
    agent_identity: Mapped[str | None] = mapped_column(String(16))
    locations: Mapped[list[Location]] = relationship(back_populates="school")


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    #: BRIN + two-digit location code, e.g. "12AB00".
    code: Mapped[str] = mapped_column(String(8), unique=True)
    #: Public address ranges of the location's network, CIDR, space-separated.
    networks: Mapped[str] = mapped_column(Text, default="")
    #: The School Data Sync school id this location came from, when synced.
    m365_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: When monitoring may happen at all, e.g. "mon-fri 08:15-15:30"; empty: any time.
    lesson_hours: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: IANA time zone of the lesson hours and of the parents' letter.
    timezone: Mapped[str] = mapped_column(
        String(64), default="Europe/Amsterdam", server_default="Europe/Amsterdam"
    )
    school: Mapped[School] = relationship(back_populates="locations")


class RemoteMode(Base):
    """One period of remote-lesson mode of a location: on until ``until`` or ended early."""

    __tablename__ = "remote_modes"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    started_by: Mapped[str] = mapped_column(String(256))
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(256))
    #: "ended early", "expired" or "replaced"
    end_note: Mapped[str | None] = mapped_column(String(64))


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(256), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    m365_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    last_ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    classes: Mapped[list[SchoolClass]] = relationship(
        secondary=class_teachers, back_populates="teachers"
    )


class Student(Base):
    __tablename__ = "students"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(256), unique=True)
    #: First name + initial of the surname ("Anna B."): nothing more is needed.
    display_name: Mapped[str] = mapped_column(String(120))
    m365_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    classes: Mapped[list[SchoolClass]] = relationship(
        secondary=class_students, back_populates="students"
    )


# Agents sign in with their account in any letter case (access.agent_student): without
# these, every agent connection scans the whole roster.
Index("ix_students_username_lower", func.lower(Student.username))
Index("ix_staff_username_lower", func.lower(Staff.username))


class AgentDevice(Base):
    """A device key registered for a student: created by the device at its first
    enrolment (with a verified identity), proven at later connections by a signed
    challenge. Only the public key is kept."""

    __tablename__ = "agent_devices"
    __table_args__ = (UniqueConstraint("student_id", "key_hash"), _NO_ID_REUSE)
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    #: the device id the agent said at enrolment (not personal; informational)
    device_id: Mapped[str] = mapped_column(String(128))
    #: SHA-256 (hex) of the public key, for the look-up
    key_hash: Mapped[str] = mapped_column(String(64))
    #: base64url SubjectPublicKeyInfo (ECDSA P-256)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_proven_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GoogleAccount(Base):
    """A school Google address mapped to a student, for schools whose Google addresses
    differ from their Microsoft 365 usernames (loaded by IT: ``klasblik agents
    google-map``)."""

    __tablename__ = "google_accounts"
    email: Mapped[str] = mapped_column(String(256), primary_key=True)  # lower case
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )


class SchoolClass(Base):
    __tablename__ = "classes"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    #: The Microsoft 365 group id of the class (School Data Sync), when synced from there.
    m365_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    students: Mapped[list[Student]] = relationship(
        secondary=class_students, back_populates="classes"
    )
    teachers: Mapped[list[Staff]] = relationship(secondary=class_teachers, back_populates="classes")


class WebSession(Base):
    """A signed-in dashboard. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of token
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Append-only record of views, refusals and administrative actions."""

    __tablename__ = "audit_log"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256), default="", index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str | None] = mapped_column(String(64))
    #: The school the entry belongs to (IT sees only its own school's entries); None for
    #: entries of the system or of accounts no school knows.
    school_id: Mapped[int | None] = mapped_column(Integer, index=True)


class CaptureBlock(Base):
    """A student who must not be viewed (objection, restriction, or erased on request):
    capture stops at once and stays off, across roster syncs, until IT clears it. Keyed by
    the lower-case Microsoft 365 username so that it outlives an erased student record."""

    __tablename__ = "capture_blocks"
    username: Mapped[str] = mapped_column(String(256), primary_key=True)
    school_id: Mapped[int | None] = mapped_column(
        ForeignKey("schools.id", ondelete="CASCADE"), index=True
    )
    #: "it" (set by IT), "roster" (from the roster import) or "erased" (after an erasure)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    set_by: Mapped[str] = mapped_column(String(256))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncState(Base):
    """Small named values kept between runs (e.g. Graph delta links)."""

    __tablename__ = "sync_state"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRun(Base):
    """One run of a scheduled job (e.g. the nightly purge of one night): started, and
    finished when it completed. Lets several instances run each night's purge once."""

    __tablename__ = "job_runs"
    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")


class PendingLogin(Base):
    """A Microsoft 365 sign-in between redirect and callback: msal's flow (state, nonce,
    PKCE verifier), kept server-side; the browser holds only a random key (its hash here).
    Used once: the callback deletes it."""

    __tablename__ = "pending_logins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the key
    flow: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

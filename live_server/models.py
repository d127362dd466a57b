"""The catalog: what the platform knows about people, events, broadcasts and their records.

Rows only; behaviour lives in the services that own each table (accounts, events, ingest,
recorder, chat, captions). Timestamps are UTC; stream-time offsets are seconds from the
start of the event's media timeline, so a replay can put chat and captions back in sync.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    BigInteger,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native PG enum) so adding a value is a code change, not a migration.
    return Enum(cls, name=name, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime that stores UTC and always hands back aware UTC values, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


class Role(str, enum.Enum):
    ADMIN = "admin"
    LECTURER = "lecturer"
    VIEWER = "viewer"


class Visibility(str, enum.Enum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PASSWORD = "password"
    UNLISTED = "unlisted"
    COURSE = "course"  # members of the LTI context (course) it is bound to, as launched from the LMS


class EventState(str, enum.Enum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class RecordingState(str, enum.Enum):
    RECORDING = "recording"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class QuestionState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    ANSWERED = "answered"
    REJECTED = "rejected"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), default=Role.VIEWER)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # Spoken language of this lecturer's recordings: imports and uncaptioned live runs are transcribed in it.
    transcription_language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LoginSession(Base):
    """A server-side login session: the cookie holds a random token, the row holds its hash."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    remote_address: Mapped[str | None] = mapped_column(String(64), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(Base):
    """Personal API token for scripts and capture boxes; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


def new_access_secret() -> str:
    """A row's random access secret: media passes are signed over it, so a new row never honours an old pass."""
    return secrets.token_urlsafe(24)


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never handed out twice, even after a delete

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "event_visibility"), default=Visibility.PUBLIC)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    scheduled_start: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    scheduled_end: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    state: Mapped[EventState] = mapped_column(_enum(EventState, "event_state"), default=EventState.SCHEDULED, index=True)
    caption_language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    caption_vocabulary: Mapped[str] = mapped_column(Text, default="")
    dvr: Mapped[bool] = mapped_column(Boolean, default=True)
    record: Mapped[bool] = mapped_column(Boolean, default=True)
    abr: Mapped[bool] = mapped_column(Boolean, default=False)
    chat_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    guests_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Attendance list of logged-in viewers for the owner (admins can always export); announced on the event page.
    attendance_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    access_secret: Mapped[str] = mapped_column(String(64), default=new_access_secret)
    # The LMS course (LTI context) whose members see it when its visibility is "course" (lti/).
    lti_context_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_contexts.id", ondelete="SET NULL"), nullable=True, index=True)

    owner: Mapped[User] = relationship(lazy="joined")
    stream_keys: Mapped[list["StreamKey"]] = relationship(
        back_populates="event", cascade="all, delete-orphan", passive_deletes=True
    )


class StreamKey(Base):
    """Secret that authorises a publish. ``key_id`` is a public lookup handle; the secret is compared in constant time."""

    __tablename__ = "stream_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    event: Mapped[Event] = relationship(back_populates="stream_keys")

    def __repr__(self) -> str:  # never print the secret
        return f"StreamKey(id={self.id}, event_id={self.event_id}, key_id={self.key_id!r})"


class BroadcastSession(Base):
    """One publish, from connect to disconnect."""

    __tablename__ = "broadcast_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    remote_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Recording(Base):
    """A replay: the media of one live run of an event (``media_path`` under the media folder)."""

    __tablename__ = "recordings"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"), nullable=True, index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "recording_visibility"), default=Visibility.PUBLIC)
    state: Mapped[RecordingState] = mapped_column(_enum(RecordingState, "recording_state"), default=RecordingState.RECORDING)
    media_path: Mapped[str] = mapped_column(String(500), default="")
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    thumbnail_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    trim_start: Mapped[float] = mapped_column(Float, default=0.0)
    trim_end: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # the live run's end
    discontinuities: Mapped[int] = mapped_column(Integer, default=0)  # reconnects and gaps marked in the playlist
    # Where the finished media lives when not in the media folder: "s3://bucket/prefix/" (vod/objects.py).
    storage_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    access_secret: Mapped[str] = mapped_column(String(64), default=new_access_secret)
    # The recording's name in URLs when unlisted ("only with the link"): ids are sequential, so counted.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    # Its own LMS course; when None, a course recording follows its event's (``access.recording_target``).
    lti_context_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_contexts.id", ondelete="SET NULL"), nullable=True, index=True)

    @property
    def public_ref(self) -> str:
        """How links name this recording: its unguessable public id when unlisted, else its id."""
        return self.public_id if self.visibility == Visibility.UNLISTED else str(self.id)


class Chapter(Base):
    __tablename__ = "chapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=True, index=True)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), nullable=True, index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    offset_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_event_created", "event_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    guest_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    stream_offset: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    guest_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # public handle of a guest author


class Question(Base):
    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    guest_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[QuestionState] = mapped_column(_enum(QuestionState, "question_state"), default=QuestionState.APPROVED)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    votes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    stream_offset: Mapped[float | None] = mapped_column(Float, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    guest_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class QuestionVote(Base):
    __tablename__ = "question_votes"
    __table_args__ = (UniqueConstraint("question_id", "voter", name="uq_question_votes_question_voter"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"))
    voter: Mapped[str] = mapped_column(String(100))  # "user:<id>" or "guest:<id>"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ChatSettings(Base):
    """The live switches of one event's chat, set by its moderators; no row means the defaults."""

    __tablename__ = "chat_settings"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    slow_mode_seconds: Mapped[int] = mapped_column(Integer, default=0)
    qa_premoderation: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class EventModerator(Base):
    """A user the event's owner trusts with its chat: delete, ban, slow mode, Q&A."""

    __tablename__ = "event_moderators"
    __table_args__ = (UniqueConstraint("event_id", "user_id", name="uq_event_moderators_event_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ChatBan(Base):
    """A ban from one event's chat; lifting it keeps the row (``lifted_at``) for the audit trail."""

    __tablename__ = "chat_bans"
    __table_args__ = (Index("ix_chat_bans_event_target", "event_id", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(100))  # "user:<id>" or "guest:<guest id>"
    name: Mapped[str] = mapped_column(String(200), default="")  # shown name at the time of the ban
    reason: Mapped[str] = mapped_column(String(500), default="")
    banned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class CaptionTrack(Base):
    """One text track of a recording (``vod/tracks.py``): a language (BCP 47), a kind (``captions``,
    ``subtitles``, ``descriptions``), a label, and where it came from (``origin``: ``live`` captions,
    ``transcription``, ``upload``).

    The automatic track (``automatic``: the live captions or the transcription) has as cues the
    recording's ``caption_segments`` rows without a track, which the captioner and the transcription
    keep writing as before; any other track's cues are its published version's, indexed as
    ``caption_segments`` rows with its ``track_id`` (search, transcript). ``automatic_of`` is the
    recording's id on its automatic track only: unique, so two requests cannot make two.
    """

    __tablename__ = "caption_tracks"
    __table_args__ = (UniqueConstraint("automatic_of", name="uq_caption_tracks_automatic_of"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(35))
    kind: Mapped[str] = mapped_column(String(12), default="subtitles")
    label: Mapped[str] = mapped_column(String(100), default="")
    origin: Mapped[str] = mapped_column(String(16), default="upload")
    automatic_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    # The version viewers get (caption_track_versions.number); 0 for an automatic track never edited.
    published_version: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    @property
    def automatic(self) -> bool:
        return self.automatic_of is not None


class CaptionTrackVersion(Base):
    """A saved state of a track's cues (JSON ``[[start, end, text], ...]``), numbered from 1 per track, with
    who saved it and when; the track's ``published_version`` chooses the one viewers get."""

    __tablename__ = "caption_track_versions"
    __table_args__ = (UniqueConstraint("track_id", "number", name="uq_caption_track_versions_track_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("caption_tracks.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    cues: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="upload")  # upload, automatic, edit
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CaptionSegment(Base):
    """One cue of a caption track: live captions of an event's run, or a recording's transcription
    (an imported recording has no event, hence the nullable ``event_id``), both without ``track_id`` (the
    recording's automatic track); or a cue of another track's published version (``track_id``), kept
    here so that transcript search finds it in its language."""

    __tablename__ = "caption_segments"
    __table_args__ = (Index("ix_caption_segments_event_start", "event_id", "start_seconds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=True)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="SET NULL"), nullable=True, index=True
    )
    track_id: Mapped[int | None] = mapped_column(
        ForeignKey("caption_tracks.id", ondelete="CASCADE"), nullable=True, index=True
    )
    language: Mapped[str] = mapped_column(String(35))
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TranscriptionJob(Base):
    """A recording to transcribe with Vosk (``captions/transcription.py``): queued, claimed by one worker,
    with its progress in media seconds, its attempts and the reason of its last failure."""

    __tablename__ = "transcription_jobs"
    __table_args__ = (Index("ix_transcription_jobs_state_created", "state", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(8))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "transcription_job_state"), default=JobState.QUEUED)
    trigger: Mapped[str] = mapped_column(String(20), default="request")  # import, live_ended, request
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    progress_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # media seconds transcribed
    total_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the last attempt failed
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)  # "<node> <pid>" of the claim
    cues: Mapped[int] = mapped_column(Integer, default=0)
    real_time_factor: Mapped[float | None] = mapped_column(Float, nullable=True)  # wall seconds per media second
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # a retry waits until then
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AudioDescriptionState(str, enum.Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class AudioDescription(Base):
    """A recording's audio-description track in one language (``vod/audio_descriptions.py``): an uploaded
    audio file or speech generated from a WebVTT descriptions text, packaged as an alternate HLS audio
    rendition beside the recording's segments. One per recording and language; a new one replaces it."""

    __tablename__ = "audio_descriptions"
    __table_args__ = (UniqueConstraint("recording_id", "language", name="uq_audio_descriptions_recording_language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(20))  # "upload" or "descriptions"
    state: Mapped[AudioDescriptionState] = mapped_column(_enum(AudioDescriptionState, "audio_description_state"),
                                                         default=AudioDescriptionState.PENDING)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed, for the owner
    cues: Mapped[int] = mapped_column(Integer, default=0)  # descriptions spoken (0 for an upload)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AudienceMinute(Base):
    """One process's view of one minute of an event's live audience (``audience/``).

    Several web workers write their own row per minute; readers combine them: distinct counts
    (``viewers``, ``caption_viewers``, each ``qualities`` entry) with MAX — each flush stores the
    cluster-wide distinct count Redis held after it added its own viewers, so the last writer's
    number is the whole minute's — and ``new_viewers`` with SUM (each viewer is new for exactly one
    process). No per-viewer data here: these rows outlive the retention of sessions.
    """

    __tablename__ = "audience_minutes"
    __table_args__ = (UniqueConstraint("event_id", "minute", "worker", name="uq_audience_minutes_event_minute_worker"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    minute: Mapped[datetime] = mapped_column(UtcDateTime())
    worker: Mapped[str] = mapped_column(String(120))
    viewers: Mapped[int] = mapped_column(Integer, default=0)
    new_viewers: Mapped[int] = mapped_column(Integer, default=0)
    caption_viewers: Mapped[int] = mapped_column(Integer, default=0)
    qualities: Mapped[str] = mapped_column(Text, default="{}")  # JSON {rendition: distinct viewers}


class AudienceSession(Base):
    """One viewer's watching of one event live (``kind`` live, ``target_id`` the event) or of one recording
    (replay, ``target_id`` the recording). Per viewer: kept ``audience_retention_days``, then reduced."""

    __tablename__ = "audience_sessions"
    __table_args__ = (UniqueConstraint("kind", "target_id", "viewer", name="uq_audience_sessions_kind_target_viewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "live" or "replay"
    target_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=True, index=True)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), nullable=True, index=True
    )
    viewer: Mapped[str] = mapped_column(String(32))  # hash of the player's anonymous id, never the cookie itself
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    watched_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AudienceReduced(Base):
    """What is left of sessions past their retention: counts and distributions, nobody in them."""

    __tablename__ = "audience_reduced"
    __table_args__ = (UniqueConstraint("kind", "target_id", name="uq_audience_reduced_kind_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=True, index=True)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), nullable=True, index=True
    )
    viewers: Mapped[int] = mapped_column(Integer, default=0)
    logged_in: Mapped[int] = mapped_column(Integer, default=0)
    watched_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    watch_histogram: Mapped[str] = mapped_column(Text, default="{}")  # JSON {whole minutes watched: viewers}
    joins: Mapped[str] = mapped_column(Text, default="{}")  # JSON {ISO minute: viewers who joined}
    leaves: Mapped[str] = mapped_column(Text, default="{}")
    reduced_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AudienceReplayBucket(Base):
    """How many times the ``bucket_seconds`` of a recording starting at ``start_second`` were watched."""

    __tablename__ = "audience_replay_buckets"

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True)
    start_second: Mapped[int] = mapped_column(Integer, primary_key=True)
    views: Mapped[int] = mapped_column(Integer, default=0)


# LTI 1.3 (lti/): the LMS platforms we are registered with, our signing keys, and who came from which course.


class LtiPlatform(Base):
    """An LMS registration (Moodle, Canvas...): what its administrator gave us when adding our tool."""

    __tablename__ = "lti_platforms"
    __table_args__ = (UniqueConstraint("issuer", "client_id", name="uq_lti_platforms_issuer_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    deployment_ids: Mapped[str] = mapped_column(Text, default="")  # one per line: the deployments we accept
    auth_login_url: Mapped[str] = mapped_column(String(1000))  # the platform's OIDC authorisation endpoint
    token_url: Mapped[str] = mapped_column(String(1000), default="")  # OAuth2 token endpoint (services; unused yet)
    jwks_url: Mapped[str] = mapped_column(String(1000))  # the platform's public keys
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    @property
    def deployments(self) -> list[str]:
        return [line.strip() for line in self.deployment_ids.splitlines() if line.strip()]


class LtiToolKey(Base):
    """One of our RSA signing keys (deep-linking responses); the private half sealed with the server secret.

    Rotation adds a key and makes it the active one; older keys stay published at the JWKS URL (tokens
    they signed still verify at the platform) until an administrator removes them."""

    __tablename__ = "lti_tool_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_key: Mapped[str] = mapped_column(Text)  # PKCS#8 PEM sealed by security.StreamKeyCipher, bound to the kid
    public_jwk: Mapped[str] = mapped_column(Text)  # JSON
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LtiAccount(Base):
    """Which of our accounts a platform's user (``sub``) is: created or linked on their first launch."""

    __tablename__ = "lti_accounts"
    __table_args__ = (UniqueConstraint("platform_id", "sub", name="uq_lti_accounts_platform_sub"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    sub: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LtiContext(Base):
    """A course of a platform's deployment, as seen in launches (the LTI context claim)."""

    __tablename__ = "lti_contexts"
    __table_args__ = (UniqueConstraint("platform_id", "deployment_id", "context_key",
                                       name="uq_lti_contexts_platform_deployment_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    context_key: Mapped[str] = mapped_column(String(255))  # the platform's context id
    title: Mapped[str] = mapped_column(String(255), default="")
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LtiMembership(Base):
    """Someone launched from this course with this role ("instructor" or "learner"): what course visibility reads."""

    __tablename__ = "lti_memberships"
    __table_args__ = (UniqueConstraint("context_id", "user_id", name="uq_lti_memberships_context_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    context_id: Mapped[int] = mapped_column(ForeignKey("lti_contexts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    last_launch_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LtiLoginState(Base):
    """An OIDC login in flight: the state we sent (its hash), the nonce the id_token must carry, the
    browser it is bound to (the hash of a cookie's value). Consumed by the launch: each is used once."""

    __tablename__ = "lti_login_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    browser_hash: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"), index=True)
    target_link_uri: Mapped[str] = mapped_column(String(1000))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class BbbServer(Base):
    """A BigBlueButton server an admin configured: its API endpoint and shared secret (sealed with the server
    secret, as stream keys are; shown back only as its first characters)."""

    __tablename__ = "bbb_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    api_url: Mapped[str] = mapped_column(String(500))  # https://bbb.example.edu/bigbluebutton/api
    secret: Mapped[str] = mapped_column(String(500))  # sealed (live_server.security.StreamKeyCipher)
    checksum_algorithm: Mapped[str] = mapped_column(String(8), default="sha256")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class BbbMeeting(Base):
    """A BigBlueButton meeting whose recordings belong to a lecturer (mapped by an admin, or created by the
    lecturer's webinar); ``auto_import``: each new recording is imported without a click; ``event_id``: the
    live event a webinar meeting is broadcast to."""

    __tablename__ = "bbb_meetings"
    __table_args__ = (UniqueConstraint("server_id", "meeting_id", name="uq_bbb_meetings_server_meeting"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("bbb_servers.id", ondelete="CASCADE"))
    meeting_id: Mapped[str] = mapped_column(String(256))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auto_import: Mapped[bool] = mapped_column(Boolean, default=False)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class BbbImport(Base):
    """One BigBlueButton recording taken into the catalog (at most once per server and record id):
    ``downloading`` → ``imported`` (``recording_id`` set; the importer takes it from there) or ``failed``."""

    __tablename__ = "bbb_imports"
    __table_args__ = (UniqueConstraint("server_id", "record_id", name="uq_bbb_imports_server_record"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("bbb_servers.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(String(256))
    meeting_id: Mapped[str] = mapped_column(String(256))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="SET NULL"), nullable=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="downloading")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

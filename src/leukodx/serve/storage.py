"""Where the web app keeps things: uploaded files on disk (named by their sha256, written and synced
before anything refers to them) and records in a database (SQLite by default; any SQLAlchemy URL,
e.g. PostgreSQL, for a multi-user deployment). The audit log is append-only."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(20))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    images: Mapped[list[Image]] = relationship(back_populates="case", order_by="Image.id")


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True)
    filename: Mapped[str] = mapped_column(String(300))       # as uploaded, for display only
    sha256: Mapped[str] = mapped_column(String(64))
    stored: Mapped[str] = mapped_column(String(400))         # path under the data folder
    model: Mapped[str] = mapped_column(String(20))
    model_sha256: Mapped[str] = mapped_column(String(64))
    prediction: Mapped[dict] = mapped_column(JSON)           # what `leukodx predict` writes for it
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    case: Mapped[Case | None] = relationship(back_populates="images")
    reviews: Mapped[list[Review]] = relationship(order_by="Review.id")

    def review(self) -> Review | None:
        return self.reviews[-1] if self.reviews else None


class Review(Base):
    """A reviewer's label beside the model's (which is never changed); the latest one counts."""
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    label: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class User(Base):
    """A person: 'reviewer' may upload and review, 'viewer' may only look. Secrets are stored hashed."""
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64), unique=True)   # sha256 of the API token
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Login(Base):
    """A browser session: the cookie holds a random secret, the database its sha256 and a CSRF token."""
    __tablename__ = "logins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


ROLES = ("reviewer", "viewer")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt, _h = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    who: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict] = mapped_column(JSON)


@event.listens_for(Audit, "before_update")
@event.listens_for(Audit, "before_delete")
def _append_only(*_):
    raise PermissionError("the audit log is append-only")


class Store:
    def __init__(self, data_dir: str | Path, db_url: str | None = None):
        self.root = Path(data_dir).expanduser()
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "overlays").mkdir(parents=True, exist_ok=True)
        url = db_url or f"sqlite:///{self.root / 'leukodx.db'}"
        self.engine = create_engine(url, connect_args={"check_same_thread": False} if url.startswith("sqlite") else {})
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _):  # durable commits, readers do not block the writer
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
        Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def save_upload(self, data: bytes, suffix: str) -> tuple[Path, str]:
        """Write the bytes under uploads/<sha256><suffix> (write, fsync, rename): never half a file."""
        digest = hashlib.sha256(data).hexdigest()
        suffix = suffix.lower() if suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"} else ""
        path = self.root / "uploads" / f"{digest}{suffix}"
        if not path.exists():
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        return path, digest

    def add_user(self, name: str, role: str, password: str) -> str:
        """Create a user; returns their API token (shown once, stored hashed)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValueError("password needs at least 8 characters")
        token = secrets.token_urlsafe(32)
        with self.session() as s:
            if s.scalar(select(User).where(User.name == name)) is not None:
                raise ValueError(f"user '{name}' exists")
            s.add(User(name=name, role=role, password=hash_password(password), token=sha(token)))
            self.audit(s, "admin", "add_user", user=name, role=role)
            s.commit()
        return token

    def has_users(self) -> bool:
        with self.session() as s:
            return s.scalar(select(User.id).limit(1)) is not None

    def user_by_token(self, token: str) -> User | None:
        with self.session() as s:
            return s.scalar(select(User).where(User.token == sha(token)))

    def login(self, name: str, password: str) -> tuple[str, str] | None:
        """(session secret, csrf token) for a right password, else None."""
        with self.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None or not check_password(password, user.password):
                return None
            secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
            s.add(Login(id=sha(secret), user_id=user.id, csrf=csrf))
            self.audit(s, name, "login")
            s.commit()
            return secret, csrf

    def session_user(self, secret: str) -> tuple[User, str] | None:
        with self.session() as s:
            row = s.get(Login, sha(secret))
            return (s.get(User, row.user_id), row.csrf) if row else None

    def audit(self, s: Session, who: str, action: str, **detail) -> None:
        s.add(Audit(who=who, action=action, detail=json.loads(json.dumps(detail, default=str))))

    def audit_rows(self) -> list[Audit]:
        with self.session() as s:
            return list(s.scalars(select(Audit).order_by(Audit.id)))

"""Tokens and roles.

Tokens are 32 random bytes (url-safe text) shown once at creation; only their SHA-256 is stored (a slow hash adds
nothing for random secrets of this length). Roles:
  kpps      uploads for exactly one TPS and sees its own submissions
  verifier  reviews fields of TPS inside its region scope (a kode prefix; empty = everywhere)
  admin     tokens, configuration, everything
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Token
from api.problems import ApiProblem
from api.regions import check_kode_tps, check_region_code

Role = Literal["kpps", "verifier", "admin"]
ROLES: tuple[str, ...] = ("kpps", "verifier", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's role and scope (or the anonymous public reader)."""

    token_id: int | None
    role: str
    tps_kode: str | None = None
    region_scope: str | None = None
    label: str = ""

    @property
    def actor(self) -> str:
        return "public" if self.token_id is None else f"token:{self.token_id}"

    def can_see_tps(self, kode: str) -> bool:
        if self.role == "admin":
            return True
        if self.role == "kpps":
            return self.tps_kode == kode
        if self.role == "verifier":
            return kode.startswith(self.region_scope or "")
        return False


PUBLIC = Principal(token_id=None, role="public")


def create_token(
    db: Session,
    role: str,
    *,
    tps_kode: str | None = None,
    region_scope: str | None = None,
    label: str = "",
    now,  # noqa: ANN001 - datetime
) -> tuple[Token, str]:
    """Create a token; returns the row and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise ApiProblem(422, "bad_role", f"role must be one of {', '.join(ROLES)}")
    if role == "kpps":
        if not tps_kode:
            raise ApiProblem(422, "kpps_needs_tps", "a kpps token must be bound to one TPS (tps_kode)")
        check_kode_tps(tps_kode)
        region_scope = None
    else:
        tps_kode = None
        if region_scope:
            check_region_code(region_scope)
    secret = f"c1_{role}_{secrets.token_urlsafe(32)}"
    row = Token(
        token_hash=hash_token(secret),
        prefix=secret[: len(role) + 8],
        role=role,
        tps_kode=tps_kode,
        region_scope=region_scope or None,
        label=label,
        created_at=now,
    )
    db.add(row)
    db.flush()
    return row, secret


def principal_for(db: Session, token: str) -> Principal | None:
    row = db.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, row.role, row.tps_kode, row.region_scope, row.label)

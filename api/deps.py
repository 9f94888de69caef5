"""FastAPI dependencies: the services container, database sessions and the caller's identity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import runtime_config
from api.auth import PUBLIC, Principal, principal_for
from api.jobs import JobRunner
from api.problems import ApiProblem
from api.settings import ServiceSettings
from api.storage import PhotoStore


@dataclass
class Services:
    settings: ServiceSettings
    engine: Engine
    sessions: sessionmaker[Session]
    store: PhotoStore
    runner: JobRunner

    def now(self) -> datetime:
        return self.settings.clock()


def services(request: Request) -> Services:
    return request.app.state.services


def db_session(svc: Services = Depends(services)) -> Iterator[Session]:
    with svc.sessions() as db:
        yield db


_bearer = HTTPBearer(auto_error=False, description="a token from `c1ocr admin create-token`")


def principal(
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer), svc: Services = Depends(services)
) -> Principal:
    if creds is None:
        return PUBLIC
    with svc.sessions() as db:
        p = principal_for(db, creds.credentials)
    if p is None:
        raise ApiProblem(401, "bad_token", "the token is unknown or revoked")
    return p


def require(*roles: str) -> Callable[..., Principal]:
    def _dep(p: Principal = Depends(principal)) -> Principal:
        if p.role == "public":
            raise ApiProblem(401, "token_required", "send a bearer token (Authorization: Bearer <token>)")
        if p.role not in roles and p.role != "admin":
            raise ApiProblem(403, "forbidden_role", f"this needs the role {' or '.join(roles)}; your token is {p.role}")
        return p

    return _dep


def tally_reader(p: Principal = Depends(principal), svc: Services = Depends(services)) -> Principal:
    """Tallies: any token, or anyone when public read is switched on."""
    if p.role != "public":
        return p
    with svc.sessions() as db:
        if runtime_config.current(db, svc.settings).public_read:
            return p
    raise ApiProblem(401, "token_required", "public read of tallies is switched off; send a bearer token")

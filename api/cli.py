"""`c1ocr serve`, `c1ocr admin ...` and `c1ocr audit verify` (registered in ocr/cli.py).

Tokens created here are printed once: only their hash is stored.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import select

from api.settings import ServiceSettings
from ocr.errors import error_markup

console = Console(soft_wrap=True)
DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="data folder (default: $C1OCR_DATA_DIR or ./c1ocr-data)")
]
DatabaseUrl = Annotated[
    Optional[str], typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data folder)")
]


def _settings(data_dir: Optional[Path], database_url: Optional[str] = None, **kw) -> ServiceSettings:  # noqa: ANN003
    opts = dict(kw)
    if data_dir is not None:
        opts["data_dir"] = data_dir
    if database_url:
        opts["database_url"] = database_url
    return ServiceSettings(**opts)


def _sessions(settings: ServiceSettings):  # noqa: ANN202
    from api.db import make_engine, make_sessionmaker, migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    return engine, make_sessionmaker(engine)


# ------------------------------------------------------------------------------------------------------- admin
admin_app = typer.Typer(help="Tokens and regions of the service.", no_args_is_help=True, add_completion=False)


# TokenIn's fields as create-token spells them, so a validation error names the option the user typed.
_TOKEN_OPTIONS = {"role": "--role", "tps_kode": "--tps", "region_scope": "--region", "label": "--label"}


@admin_app.command("create-token")
def create_token_cmd(
    role: Annotated[str, typer.Option(help="kpps, verifier or admin")],
    tps: Annotated[Optional[str], typer.Option(help="kpps: the 13-digit kode TPS it uploads for")] = None,
    region: Annotated[Optional[str], typer.Option(help="verifier: region code prefix (2/4/6/10 digits)")] = None,
    label: Annotated[str, typer.Option(help="who holds it")] = "",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it (shown once)."""
    from api.problems import ApiProblem
    from api.routes_admin import TokenIn, create_token_audited

    settings = _settings(data_dir, database_url)
    engine, sessions = _sessions(settings)
    try:
        with sessions() as db, db.begin():
            row, secret = create_token_audited(
                db, "cli", TokenIn(role=role, tps_kode=tps, region_scope=region, label=label), settings.clock()
            )
    except ApiProblem as e:
        console.print(error_markup(e.code, e.detail))
        raise typer.Exit(2) from None
    except ValidationError as e:  # the options do not fit TokenIn: name each bad option, as the HTTP API does
        bad = "; ".join(f"{_TOKEN_OPTIONS.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in e.errors())
        console.print(error_markup("invalid_request", f"{bad}; see c1ocr admin create-token --help"))
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(f"token id {row.id} ({row.role}{' ' + (row.tps_kode or row.region_scope or '') if row.tps_kode or row.region_scope else ''}):")
    print(secret)


@admin_app.command("revoke-token")
def revoke_token_cmd(token_id: int, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Revoke a token by id (see list-tokens)."""
    from api.problems import ApiProblem
    from api.routes_admin import revoke_token_audited

    settings = _settings(data_dir, database_url)
    engine, sessions = _sessions(settings)
    try:
        with sessions() as db, db.begin():
            revoke_token_audited(db, "cli", token_id, settings.clock())
    except ApiProblem as e:
        console.print(error_markup(e.code, e.detail))
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(f"token {token_id} revoked")


@admin_app.command("list-tokens")
def list_tokens_cmd(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List tokens (ids, roles, scopes; never the secrets)."""
    from rich.table import Table

    from api.models import Token

    engine, sessions = _sessions(_settings(data_dir, database_url))
    table = Table("id", "prefix", "role", "tps", "region", "label", "created", "revoked")
    with sessions() as db:
        for t in db.scalars(select(Token).order_by(Token.id)):
            table.add_row(str(t.id), t.prefix + "…", t.role, t.tps_kode or "", t.region_scope or "", t.label,
                          t.created_at.strftime("%Y-%m-%d %H:%M"), t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "")
    engine.dispose()
    console.print(table)


@admin_app.command("load-regions")
def load_regions_cmd(csv_file: Path, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Load regions and TPS from a CSV file of `kode,nama` rows (13-digit codes are TPS)."""
    from api.problems import ApiProblem
    from api.routes_admin import load_regions_audited

    settings = _settings(data_dir, database_url)
    engine, sessions = _sessions(settings)
    try:
        with sessions() as db, db.begin():
            n = load_regions_audited(db, "cli", csv_file.read_text(encoding="utf-8"), settings.clock())
    except ApiProblem as e:
        console.print(error_markup(e.code, e.detail))
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(f"loaded {n} rows")


# ------------------------------------------------------------------------------------------------------- audit
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True, add_completion=False)


@audit_app.callback()
def _audit() -> None:
    """The hash-chained audit log."""


@audit_app.command("verify")
def verify_cmd(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Recompute the hash chain; exit 1 and name the first bad event when it was altered."""
    from api import audit

    engine, sessions = _sessions(_settings(data_dir, database_url))
    with sessions() as db:
        r = audit.verify(db)
    engine.dispose()
    if r.ok:
        console.print(f"audit log OK: {r.events} events, head {r.head_hash[:16]}…")
        return
    console.print(f"[red]audit log BROKEN[/] at seq {r.first_bad_seq}: {r.problem}")
    raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------------- serve
def serve_command(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    data_dir: DataDir = None,
    load_samples: Annotated[
        Optional[Path], typer.Option("--load-samples", help="upload the photos in this folder through the real upload path")
    ] = None,
    workers: Annotated[int, typer.Option(help="reading worker processes")] = 1,
) -> None:
    """Start the service (SQLite + local photo store + process-pool reader), optionally loading sample photos."""
    import uvicorn

    from api.app import create_app
    from api.auth import create_token
    from api.models import Token

    settings = _settings(data_dir, job_workers=workers)
    app = create_app(settings)
    svc = app.state.services
    with svc.sessions() as db, db.begin():
        now = settings.clock()
        admin_secret = None
        if db.scalar(select(Token).where(Token.role == "admin", Token.revoked_at.is_(None))) is None:
            _, admin_secret = create_token(db, "admin", label="first admin (c1ocr serve)", now=now)
        _, verifier_secret = create_token(db, "verifier", label="c1ocr serve", now=now)
    base = f"http://{host}:{port}"
    if load_samples is not None:
        threading.Thread(target=_load_samples, args=(base, load_samples, svc), daemon=True).start()
    console.print(f"[bold]c1ocr service[/] on {base}  (data: {settings.data_dir.resolve()})")
    console.print(f"review page:  {base}/review   API docs: {base}/docs")
    console.print(f"verifier token (paste it into the review page): [bold]{verifier_secret}[/]")
    if admin_secret:
        console.print(f"admin token (shown once): [bold]{admin_secret}[/]")
    console.print("[yellow]All numbers are PROVISIONAL; the official result is the KPU pleno.[/]")
    uvicorn.run(app, host=host, port=port, log_level="info")


def sample_photos(folder: Path) -> list[tuple[Path, dict]]:
    """Sample photos with their truth files (`x.jpg` + `x.json`), sorted by name."""
    out = []
    for photo in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")):
        truth_path = photo.with_suffix(".json")
        truth = json.loads(truth_path.read_text(encoding="utf-8")) if truth_path.exists() else {}
        out.append((photo, truth))
    return out


def _load_samples(base: str, folder: Path, svc) -> None:  # noqa: ANN001
    """Upload each sample through HTTP as a KPPS would: one TPS per (seed, index) group of pages."""
    import httpx

    from api.auth import create_token
    from ocr.templates import get_template

    for _ in range(100):
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    samples = sample_photos(folder)
    tps_of: dict[tuple, str] = {}
    tokens: dict[str, str] = {}
    ok = 0
    for photo, truth in samples:
        slot_id = truth.get("expected_template") or truth.get("template_id")
        if not slot_id:
            console.print(f"[yellow]skip[/] {photo.name}: no truth file naming its slot")
            continue
        t = get_template(slot_id)
        group = (truth.get("seed"), truth.get("index"), t.form_set)
        kode = tps_of.setdefault(group, f"3201010001{len(tps_of) + 1:03d}")
        if kode not in tokens:
            with svc.sessions() as db, db.begin():
                _, tokens[kode] = create_token(db, "kpps", tps_kode=kode, label="sample loader", now=svc.now())
        r = httpx.post(
            f"{base}/api/v1/tps/{kode}/forms/{t.form_set}/pages/{t.page}/photo",
            content=photo.read_bytes(),
            headers={"Authorization": f"Bearer {tokens[kode]}", "Idempotency-Key": f"sample:{photo.name}"},
            timeout=120,
        )
        ok += r.status_code == 202
        if r.status_code != 202:
            console.print(f"[yellow]{photo.name}[/]: {r.status_code} {r.json().get('code')}")
    console.print(f"loaded {ok}/{len(samples)} sample photos; open {base}/review")
    sys.stdout.flush()

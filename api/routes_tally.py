"""Provisional tallies and exports (JSON and CSV, per TPS and per region)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from api import tally
from api.auth import Principal
from api.deps import Services, db_session, services, tally_reader

router = APIRouter(prefix="/api/v1", tags=["tallies"])
Level = Literal["provinsi", "kabkota", "kecamatan", "kelurahan"]
RegionQ = Annotated[str | None, Query(max_length=13, pattern=r"^\d{2,13}$", description="kode prefix")]
FormSetQ = Annotated[str | None, Query(max_length=64)]
PROVISIONAL_HEADERS = {"X-C1OCR-Provisional": "true"}


@router.get("/tallies", summary="Provisional totals per region (PROVISIONAL: the official result is the pleno)")
def tallies(
    level: Level = "provinsi",
    region: RegionQ = None,
    form_set: FormSetQ = None,
    _p: Principal = Depends(tally_reader),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    per_tps = tally.tps_tallies(db, region=region, form_set=form_set)
    return tally.envelope(
        svc.now(), level=level, region=region, regions=tally.region_tallies(db, per_tps, level, region=region)
    )


@router.get("/tallies/tps", summary="Provisional values per TPS with provenance")
def tallies_tps(
    region: RegionQ = None,
    form_set: FormSetQ = None,
    _p: Principal = Depends(tally_reader),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    per_tps = tally.tps_tallies(db, region=region, form_set=form_set)
    return tally.envelope(svc.now(), region=region, tps=[tally.tps_json(t) for t in per_tps])


@router.get("/exports/tps.csv", response_class=PlainTextResponse)
def export_tps_csv(
    region: RegionQ = None,
    form_set: FormSetQ = None,
    _p: Principal = Depends(tally_reader),
    db: Session = Depends(db_session),
) -> PlainTextResponse:
    text = tally.tps_csv(tally.tps_tallies(db, region=region, form_set=form_set))
    return _csv(text, "provisional-tps.csv")


@router.get("/exports/regions.csv", response_class=PlainTextResponse)
def export_regions_csv(
    level: Level = "provinsi",
    region: RegionQ = None,
    form_set: FormSetQ = None,
    _p: Principal = Depends(tally_reader),
    db: Session = Depends(db_session),
) -> PlainTextResponse:
    per_tps = tally.tps_tallies(db, region=region, form_set=form_set)
    return _csv(tally.region_csv(tally.region_tallies(db, per_tps, level, region=region)), f"provisional-{level}.csv")


def _csv(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={**PROVISIONAL_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )

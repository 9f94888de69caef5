"""`c1ocr read PHOTO...`: read page photos; JSON lines with --json, a summary table otherwise.

Exit codes: 0 every photo read; 1 at least one photo unreadable (retake); 2 bad arguments (unknown template or
engine); 3 missing dependency (tesseract, model); 4 at least one file is not a usable image.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ocr.errors import BadInput, ExitCode, error_markup

ENGINES = ("ensemble", "cnn", "tesseract")


def _init_worker() -> None:
    # One core per worker: parallelism comes from processing photos side by side.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _read_one(path: str, template: str | None, engine: str, debug: str | None) -> dict:
    from ocr.pipeline import read_page

    try:
        r = read_page(Path(path), image_name=path, expected_template=template, engine=engine,
                      debug_dir=Path(debug) if debug else None)
        return r.model_dump(mode="json")
    except BadInput as e:  # a file that is not a usable image is reported, the batch goes on
        return {"image": path, "status": "error", "reason": e.code, "detail": e.message}


def read_command(
    photos: Annotated[list[Path], typer.Argument(help="page photos (JPEG, PNG, WebP, HEIC)")],
    template: Annotated[Optional[str], typer.Option("--template", "-t", help="the page expected (slot); a different page is reported as wrong_page")] = None,
    engine: Annotated[str, typer.Option("--engine", "-e", help="ensemble | cnn | tesseract")] = "ensemble",
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object per photo (JSON lines) on stdout")] = False,
    debug: Annotated[Optional[Path], typer.Option("--debug", help="write stage overlays and cell crops here")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="photos processed in parallel")] = 1,
) -> None:
    err = Console(stderr=True)
    if engine not in ENGINES:
        err.print(error_markup("unknown_engine", f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}"))
        raise typer.Exit(int(ExitCode.BAD_ARGUMENTS))
    if template is not None:
        from ocr.errors import UnknownTemplate
        from ocr.templates import get_template

        try:
            get_template(template)  # before any work
        except UnknownTemplate as e:
            err.print(error_markup(e.code, e.message))
            raise typer.Exit(int(e.exit_code)) from None
    paths = [str(p) for p in photos]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        err.print(error_markup("file_not_found", f"no such file: {', '.join(missing)}; check the path"))
        raise typer.Exit(int(ExitCode.BAD_ARGUMENTS))
    dbg = str(debug) if debug else None
    results: list[dict] = []
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=len(paths) < 2 or not err.is_terminal,
    )
    with progress:
        task = progress.add_task("reading", total=len(paths))

        def emit(res: dict) -> None:
            results.append(res)
            if json_out:
                sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            progress.advance(task)

        if jobs == 1 or len(paths) == 1:
            for p in paths:
                emit(_read_one(p, template, engine, dbg))
        else:
            with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
                futs = [pool.submit(_read_one, p, template, engine, dbg) for p in paths]
                for f in futs:  # keep input order in the output
                    emit(f.result())

    if not json_out:
        _print_table(results)
    if any(r["status"] == "error" for r in results):
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    if any(r["status"] == "unreadable" for r in results):
        raise typer.Exit(int(ExitCode.SOME_UNREADABLE))


def _print_table(results: list[dict]) -> None:
    con = Console()
    for r in results:
        if r["status"] != "read":
            instr = (r.get("instruction") or {}).get("en", "")
            con.print(f"[bold]{r['image']}[/]: [red]{r['status']}[/] {r.get('reason')} ({r.get('detail') or ''}) {instr}")
            continue
        table = Table(title=f"{r['image']}  [{r['template']}]  page: {r.get('page_status')}", title_justify="left")
        for col in ("field", "text", "value", "confidence", "status", "reasons"):
            table.add_column(col)
        for fid, f in r["fields"].items():
            table.add_row(fid, f["text"], "" if f["value"] is None else str(f["value"]), f"{f['confidence']:.3f}",
                          f["status"], ", ".join(f["reasons"]))
        con.print(table)
        failed = [x for x in r.get("rules", []) if x["status"] == "fail"]
        for x in failed:
            con.print(f"  rule [yellow]{x['name']}[/] ({x['severity']}): {x['message']}")

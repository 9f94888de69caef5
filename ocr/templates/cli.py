"""`c1ocr forms ...`: list, show, validate and print the form templates.

    c1ocr forms list
    c1ocr forms show ppwp-2024-plano-p2
    c1ocr forms validate my-template.json
    c1ocr forms render kwk-2024-p2-3 --out page.pdf          # true physical size, printable
    c1ocr forms render ppwp-2024-plano-p1 --out p1.png --dpmm 6
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ocr.errors import BadInput, C1Error, ExitCode, MissingDependency
from ocr.templates import get_template, list_templates, load_template_file, reference_path
from ocr.templates.render import blank_page, page_shape, render_page
from ocr.templates.schema import Template

forms_app = typer.Typer(no_args_is_help=True, help="List, validate and print the built-in form templates.")

# The official blank PDF of the 2024 plano (pages 1-3 = templates ppwp-2024-plano-p1..p3).
OFFICIAL_PDF_REL = Path("election_forms/kp24_blank_forms_2024/C.HASIL-PPWP.pdf")
OFFICIAL_PDF_TEMPLATES = {"ppwp-2024-plano-p1": 0, "ppwp-2024-plano-p2": 1, "ppwp-2024-plano-p3": 2}


def _default_official_pdf() -> Path:
    from ocr.templates.authoring.common import default_shared_data

    return default_shared_data() / OFFICIAL_PDF_REL


@forms_app.command("list")
def list_command() -> None:
    """Table of the built-in templates."""
    table = Table(title="Built-in form templates")
    for col in ("id", "form", "page", "election", "marker", "fields", "boxes", "version", "hash"):
        table.add_column(col, justify="right" if col in ("page", "fields", "boxes") else "left", no_wrap=col == "id")
    for t in list_templates():
        marker = f"{t.marker.family}:{t.marker.id}" if t.marker else "-"
        boxes = sum(len(f.boxes) for f in t.fields)
        table.add_row(t.id, t.form, str(t.page), t.election, marker, str(len(t.fields)), str(boxes), t.version,
                      t.content_hash.removeprefix("sha256:")[:12])
    Console().print(table)


@forms_app.command("show")
def show_command(template_id: str = typer.Argument(..., help="template id (see `c1ocr forms list`)")) -> None:
    """Print one template as JSON (with its content hash)."""
    t = get_template(template_id)
    doc = t.model_dump(mode="json")
    doc["content_hash"] = t.content_hash
    typer.echo(json.dumps(doc, indent=1, ensure_ascii=False))


@forms_app.command("validate")
def validate_command(files: list[Path] = typer.Argument(..., help="template JSON files")) -> None:
    """Validate external template JSON files against the schema; exits 2 naming the bad key on failure."""
    console, err = Console(), Console(stderr=True)
    failed = 0
    for path in files:
        try:
            t = load_template_file(path)
        except C1Error as e:
            failed += 1
            err.print(f"[bold red]invalid[/] {e.message}", highlight=False)
            continue
        console.print(f"[green]ok[/] {path}: {t.id} v{t.version} ({len(t.fields)} fields) {t.content_hash[:19]}",
                      highlight=False)
    if failed:
        raise typer.Exit(int(ExitCode.BAD_ARGUMENTS))


def rasterise_official(pdf: Path, page_index: int, template: Template, dpmm: float) -> np.ndarray:
    """One page of the official blank PDF at dpmm, cropped/padded to the template's page size."""
    try:
        import pypdfium2 as pdfium
    except ImportError as e:  # pragma: no cover - pypdfium2 is a declared dependency
        raise MissingDependency("pypdfium2 is needed to rasterise the official PDF: pip install pypdfium2") from e
    doc = pdfium.PdfDocument(str(pdf))
    try:
        img = doc[page_index].render(scale=dpmm * 25.4 / 72.0, grayscale=True).to_numpy()
    finally:
        doc.close()
    if img.ndim == 3:
        img = img[..., 0]
    h, w = page_shape(template, dpmm)
    out = np.full((h, w), 255, np.uint8)
    hh, ww = min(h, img.shape[0]), min(w, img.shape[1])
    out[:hh, :ww] = img[:hh, :ww]
    return out


def page_image(template: Template, dpmm: float, official_pdf: Path | None) -> tuple[np.ndarray, str]:
    """The printable page and where it came from: official PDF > committed reference > our drawing."""
    if template.id in OFFICIAL_PDF_TEMPLATES:
        pdf = official_pdf or _default_official_pdf()
        if pdf.exists():
            return rasterise_official(pdf, OFFICIAL_PDF_TEMPLATES[template.id], template, dpmm), f"official PDF {pdf}"
        if official_pdf is not None:
            raise BadInput(f"official PDF not found: {official_pdf}; give the path to C.HASIL-PPWP.pdf")
    ref = reference_path(template)
    if ref is not None and ref.exists():
        src = f"reference image {ref.name} (resampled from {template.reference.dpmm:g} px/mm)"
        return np.array(blank_page(template, dpmm)), src
    return render_page(template, dpmm), "drawn from the template geometry"


@forms_app.command("render")
def render_command(
    template_id: str = typer.Argument(..., help="template id (see `c1ocr forms list`)"),
    out: Path = typer.Option(..., "--out", "-o", help="output file: .pdf (true physical size) or .png"),
    dpmm: float = typer.Option(6.0, "--dpmm", min=1.0, max=24.0, help="pixels per millimetre"),
    official_pdf: Path | None = typer.Option(
        None, "--official-pdf", help="official blank C.HASIL-PPWP.pdf (default ../shared/data/election_forms/...)"
    ),
) -> None:
    """Write a blank page a KPU office could print: PNG at dpmm px/mm, or PDF at the true page size."""
    from PIL import Image

    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise BadInput(f"--out must end in .pdf or .png, got {out.name!r}")
    t = get_template(template_id)
    img, source = page_image(t, dpmm, official_pdf)
    out.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(img)
    if suffix == ".png":
        dpi = dpmm * 25.4
        pil.save(out, dpi=(dpi, dpi), optimize=True)
    else:
        # Pillow writes the page size from `resolution` (dpi): pixels / dpi inches = the template's mm.
        pil.save(out, "PDF", resolution=dpmm * 25.4)
    Console(stderr=True).print(
        f"wrote {out} ({t.page_size.width_mm:g} x {t.page_size.height_mm:g} mm, {img.shape[1]} x {img.shape[0]} px) "
        f"from {source}",
        highlight=False,
    )

"""Built-in form templates: declarative JSON documents in `data/`, validated by `schema.py`.

    from ocr.templates import get_template, list_templates
    t = get_template("ppwp-2024-plano-p2")
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from ocr.errors import TemplateError, UnknownTemplate
from ocr.templates.schema import FormSet, Template

DATA_DIR = Path(str(resources.files("ocr.templates") / "data"))
REFERENCE_DIR = Path(str(resources.files("ocr.templates") / "reference"))


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(document)"
        parts.append(f"{loc}: {e['msg']}")
    return f"{source}: invalid template: " + "; ".join(parts)


def parse_template(doc: dict | str, source: str = "<template>") -> Template:
    """Validate one template document; a `TemplateError` names the offending key."""
    try:
        if isinstance(doc, str):
            return Template.model_validate_json(doc)
        return Template.model_validate(doc)
    except ValidationError as e:
        raise TemplateError(_format_validation_error(source, e)) from None


def parse_form_set(doc: dict | str, source: str = "<form set>") -> FormSet:
    try:
        if isinstance(doc, str):
            return FormSet.model_validate_json(doc)
        return FormSet.model_validate(doc)
    except ValidationError as e:
        raise TemplateError(_format_validation_error(source, e)) from None


def load_template_file(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        raise TemplateError(f"{path}: cannot read template: {e}") from None
    return parse_template(text, source=str(path))


@lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, Template], dict[str, FormSet]]:
    templates: dict[str, Template] = {}
    for path in sorted(DATA_DIR.glob("*.json")):
        t = load_template_file(path)
        if t.id in templates:
            raise TemplateError(f"{path}: duplicate template id {t.id!r}")
        if path.stem != t.id:
            raise TemplateError(f"{path}: file name must equal the template id {t.id!r}")
        templates[t.id] = t
    sets: dict[str, FormSet] = {}
    for path in sorted((DATA_DIR / "sets").glob("*.json")):
        fs = parse_form_set(path.read_text(encoding="utf-8"), source=str(path))
        for ref in fs.pages:
            if ref.template not in templates:
                raise TemplateError(f"{path}: page {ref.page} refers to unknown template {ref.template!r}")
        sets[fs.id] = fs
    return templates, sets


def list_templates() -> list[Template]:
    return list(_builtin()[0].values())


def get_template(template_id: str) -> Template:
    templates = _builtin()[0]
    try:
        return templates[template_id]
    except KeyError:
        raise UnknownTemplate(
            f"unknown template {template_id!r}; run `c1ocr forms list` to see the built-in templates"
        ) from None


def list_form_sets() -> list[FormSet]:
    return list(_builtin()[1].values())


def get_form_set(set_id: str) -> FormSet:
    sets = _builtin()[1]
    try:
        return sets[set_id]
    except KeyError:
        raise UnknownTemplate(f"unknown form set {set_id!r}") from None


def template_for_marker(family: str, marker_id: int) -> Template | None:
    for t in list_templates():
        if t.marker is not None and t.marker.family == family and t.marker.id == marker_id:
            return t
    return None


def reference_path(t: Template) -> Path | None:
    if t.reference is None:
        return None
    return REFERENCE_DIR / t.reference.image

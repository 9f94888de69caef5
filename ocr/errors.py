"""Error taxonomy shared by the CLI, the reader and the API.

Expected failures of a *photo* (blurry, wrong page, ...) are values (`Unreadable`), not exceptions: a bad photo is
normal input. Exceptions are for bad *requests* (a file that is not an image, too large) and for a broken
installation (tesseract missing). Each carries a stable machine code, a human message that says what to do next,
and the CLI exit code it maps to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """Process exit codes of `c1ocr` (documented in the README)."""

    OK = 0
    SOME_UNREADABLE = 1  # every photo was processed, at least one must be retaken
    BAD_ARGUMENTS = 2  # usage errors (typer/click also use 2)
    MISSING_DEPENDENCY = 3  # tesseract, the digit model or an optional package is missing
    BAD_INPUT = 4  # an input file is not a usable image (corrupt, too large, unsupported)
    INTERNAL_ERROR = 5


class UnreadableReason(StrEnum):
    """Why a photo cannot be read; each reason has a retake instruction for the officer."""

    NOT_FOUND = "not_found"  # no known form found in the photo
    WRONG_PAGE = "wrong_page"  # a known page, but not the one expected for this slot
    BLURRY = "blurry"
    GLARE = "glare"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    TOO_SMALL = "too_small"  # too few pixels per digit box
    CUT_OFF = "cut_off"  # part of the page outside the photo
    BAD_GEOMETRY = "bad_geometry"  # implausible homography (extreme angle, folded page)
    OCCLUDED = "occluded"  # something covers the digit boxes


# (Bahasa Indonesia, English). Short, actionable, read on a phone at the TPS.
RETAKE_INSTRUCTIONS: dict[UnreadableReason, tuple[str, str]] = {
    UnreadableReason.NOT_FOUND: (
        "Formulir tidak dikenali. Foto seluruh halaman formulir C.Hasil, keempat tanda sudut harus terlihat.",
        "Form not recognised. Photograph the whole C.Hasil page with all four corner marks visible.",
    ),
    UnreadableReason.WRONG_PAGE: (
        "Halaman salah untuk slot ini. Foto halaman yang diminta (lihat nomor halaman di pojok kanan atas).",
        "Wrong page for this slot. Photograph the requested page (see the page number at the top right).",
    ),
    UnreadableReason.BLURRY: (
        "Foto buram. Pegang ponsel dengan stabil, ketuk layar untuk fokus, lalu foto ulang.",
        "Photo is blurry. Hold the phone steady, tap to focus, and retake.",
    ),
    UnreadableReason.GLARE: (
        "Ada pantulan cahaya pada kotak angka. Matikan lampu kilat dan ubah sudut foto.",
        "Glare on the number boxes. Turn off the flash and change the angle.",
    ),
    UnreadableReason.TOO_DARK: (
        "Foto terlalu gelap. Pindah ke tempat yang lebih terang lalu foto ulang.",
        "Photo too dark. Move to better light and retake.",
    ),
    UnreadableReason.TOO_BRIGHT: (
        "Foto terlalu terang. Hindari cahaya langsung dan matikan lampu kilat.",
        "Photo overexposed. Avoid direct light and turn off the flash.",
    ),
    UnreadableReason.TOO_SMALL: (
        "Formulir terlalu kecil dalam foto. Dekatkan ponsel sampai halaman memenuhi layar.",
        "The form is too small in the photo. Move closer so the page fills the screen.",
    ),
    UnreadableReason.CUT_OFF: (
        "Sebagian halaman terpotong. Pastikan keempat tanda sudut masuk dalam foto.",
        "Part of the page is cut off. Make sure all four corner marks are in the frame.",
    ),
    UnreadableReason.BAD_GEOMETRY: (
        "Sudut foto terlalu miring atau kertas terlipat. Ratakan kertas dan foto tegak lurus dari atas.",
        "Angle too steep or paper folded. Flatten the sheet and shoot straight from above.",
    ),
    UnreadableReason.OCCLUDED: (
        "Ada benda atau jari menutupi kotak angka. Singkirkan lalu foto ulang.",
        "Something covers the number boxes. Remove it and retake.",
    ),
}


@dataclass(frozen=True)
class Unreadable:
    """A typed "cannot read this photo" result with its retake instruction."""

    reason: UnreadableReason
    detail: str = ""

    @property
    def instruction_id(self) -> str:
        return RETAKE_INSTRUCTIONS[self.reason][0]

    @property
    def instruction_en(self) -> str:
        return RETAKE_INSTRUCTIONS[self.reason][1]

    def to_dict(self) -> dict:
        return {
            "reason": self.reason.value,
            "detail": self.detail,
            "instruction": {"id": self.instruction_id, "en": self.instruction_en},
        }


class C1Error(Exception):
    """Base of user-facing errors: stable `code`, human `message`, CLI `exit_code`, HTTP `http_status`."""

    code = "internal_error"
    exit_code = ExitCode.INTERNAL_ERROR
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class BadInput(C1Error):
    """The input is not a usable image (corrupt, truncated, too large, unsupported format)."""

    code = "bad_input"
    exit_code = ExitCode.BAD_INPUT
    http_status = 422


class InputTooLarge(BadInput):
    code = "too_large"
    http_status = 413


class MissingDependency(C1Error):
    """A required external tool or file is missing (tesseract binary, digit model, optional package)."""

    code = "missing_dependency"
    exit_code = ExitCode.MISSING_DEPENDENCY
    http_status = 503


class TemplateError(C1Error):
    """A template document is invalid; the message names the offending key."""

    code = "template_invalid"
    exit_code = ExitCode.BAD_ARGUMENTS
    http_status = 500


class UnknownTemplate(C1Error):
    code = "unknown_template"
    exit_code = ExitCode.BAD_ARGUMENTS
    http_status = 422


def error_markup(code: str, message: str) -> str:
    """One console line (rich markup) for a user-facing error: `error [code] message`. The code and message are
    escaped: rich would take "[model_missing]" for a style tag and drop it."""
    from rich.markup import escape

    return f"[bold red]error[/] {escape(f'[{code}]')} {escape(message)}"

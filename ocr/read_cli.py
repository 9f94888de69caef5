"""`c1ocr read` (placeholder: being written by the lead)."""


def read_command() -> None:
    raise SystemExit("c1ocr read is not available yet")

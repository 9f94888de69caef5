"""`c1ocr synth` (placeholder until the synth engineer lands it)."""


def synth_command() -> None:
    raise SystemExit("c1ocr synth is not available yet")

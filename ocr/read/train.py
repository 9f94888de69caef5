"""`c1ocr train` (placeholder until the model engineer lands it)."""


def train_command() -> None:
    raise SystemExit("c1ocr train is not available yet")

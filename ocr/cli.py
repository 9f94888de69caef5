"""`c1ocr` command line: one entry point, sub-commands registered from the modules that own them."""

from __future__ import annotations

import sys

import typer

from ocr.errors import C1Error, ExitCode, error_markup

app = typer.Typer(
    name="c1ocr",
    help="Read photos of Indonesian election tally forms (C.Hasil / C1) into provisional, reviewable numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Each module owns its commands; this file only wires them together.
    from ocr.templates.cli import forms_app

    app.add_typer(forms_app, name="forms", help="List, validate and print the built-in form templates.")

    from ocr.synth.cli import synth_command

    app.command("synth", help="Generate synthetic filled-form photos with ground truth.")(synth_command)

    from ocr.read_cli import read_command

    app.command("read", help="Read page photos: locate, gate, read every digit box.")(read_command)

    from api.cli import admin_app, audit_app, serve_command

    app.command("serve", help="Start the service (uploads, review page, provisional tallies).")(serve_command)
    app.add_typer(admin_app, name="admin", help="Service tokens and regions.")
    app.add_typer(audit_app, name="audit", help="Verify the hash-chained audit log.")

    from ocr.calibration import calibrate_command

    app.command("calibrate", help="Fit the field-confidence calibration from benchmark field records.")(calibrate_command)

    from ocr.read.train import merge_command, train_command

    app.command("train", help="Train the digit CNN and export it to ONNX (needs the 'train' extra).")(train_command)
    app.command("merge-models", help="Merge trained digit nets into one averaging ONNX model ('train' extra).")(
        merge_command
    )


_register()


def main() -> None:
    try:
        app()
    except C1Error as e:
        from rich.console import Console

        Console(stderr=True).print(error_markup(e.code, e.message))
        sys.exit(int(e.exit_code))
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERNAL_ERROR))


if __name__ == "__main__":
    main()

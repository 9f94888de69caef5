"""`c1ocr forms ...` (placeholder until the templates engineer lands it)."""
import typer

forms_app = typer.Typer(no_args_is_help=True)

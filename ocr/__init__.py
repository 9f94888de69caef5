"""c1ocr: reads photos of Indonesian election tally forms (Formulir C.Hasil / C1) into provisional numbers.

The reader is a pipeline of small stages with typed results:
load -> locate -> gate -> cells -> read -> decode -> rules.
Nothing in this package depends on the web service (`api/`).
"""

__version__ = "0.1.0"

"""Example rows of the penguins dataset, as requests send them."""

from __future__ import annotations

# The row of the README's (and the spec's) curl example.
SPEC_ROW = {
    "island": "Biscoe",
    "culmen_length_mm": 48.6,
    "culmen_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "MALE",
}
# A row with most features missing: the model imputes them.
SPARSE_ROW = {"island": "Torgersen", "culmen_length_mm": 39.1, "sex": None}
CLASSES = frozenset({"Adelie", "Chinstrap", "Gentoo"})

"""Write data/penguins.csv from the `palmerpenguins` package, in the project's schema.

The specification's schema is the Kaggle edition of the Palmer penguins data:
`culmen_*` instead of `bill_*`, `sex` as MALE/FEMALE, no `year`. The output is
deterministic, so re-running this script leaves the committed file unchanged.

    uv run python scripts/make_penguins_dataset.py
"""

from __future__ import annotations

import sys
from pathlib import Path

COLUMNS = {
    "species": "species",
    "island": "island",
    "bill_length_mm": "culmen_length_mm",
    "bill_depth_mm": "culmen_depth_mm",
    "flipper_length_mm": "flipper_length_mm",
    "body_mass_g": "body_mass_g",
    "sex": "sex",
}


def main(output: Path) -> None:
    from palmerpenguins import load_penguins

    data = load_penguins()[list(COLUMNS)].rename(columns=COLUMNS)
    data["sex"] = data["sex"].str.upper()
    output.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(output, index=False, float_format="%g")
    print(f"Wrote {len(data)} rows to {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/penguins.csv"))

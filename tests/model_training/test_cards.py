"""Tests for model_training.cards: the training card's components."""

from __future__ import annotations

import base64

from support.svg import SVG, parse_svg, polyline_points


def test_the_training_card_shows_the_chart_as_an_image() -> None:
    from metaflow.cards import Image

    from model_training.cards import training_curves

    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.8, 0.9]}
    _, image = training_curves(history)
    assert isinstance(image, Image)
    rendered = image.render()
    src = rendered["src"]
    assert src.startswith("data:image/svg+xml;base64,"), rendered
    svg = parse_svg(base64.b64decode(src.split(",", 1)[1]).decode())
    assert [len(polyline_points(line)) for line in svg.findall(f"{SVG}polyline")] == [3, 3]


def test_the_training_curves_import_no_plotting_library() -> None:
    """The `train` task draws them: Matplotlib there would cost its import and, on a
    user's first run, building its font cache, on the pipeline's longest path."""
    from support.flows import python_result

    loaded = python_result(
        "import json, sys\n"
        "from model_training.cards import training_curves\n"
        "training_curves({'loss': [1.0, 0.5], 'accuracy': [0.5, 0.9]})\n"
        "print('LOADED=' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n",
        "LOADED",
    )
    assert not {"matplotlib", "PIL"} & set(loaded), sorted({"matplotlib", "PIL"} & set(loaded))


def test_dataset_tables_have_no_index_column_and_every_row() -> None:
    import pandas as pd
    from metaflow.cards import Table

    from model_training.cards import dataset_summary

    columns = {f"feature_{i}": [1.0, None, 3.0] for i in range(7)}
    data = pd.DataFrame({"species": ["Adelie", "Gentoo", "Adelie"], **columns})
    balance, missing = [c for c in dataset_summary(data, "species") if isinstance(c, Table)]
    assert balance.render()["columns"] == ["species", "rows"]
    assert balance.render()["data"] == [["Adelie", 2], ["Gentoo", 1]]
    rendered = missing.render()
    assert rendered["columns"] == ["column", "missing values"]
    # Metaflow's Table.from_dataframe would show five of these eight rows.
    assert [row[0] for row in rendered["data"]] == list(data.columns)
    assert rendered["data"][1] == ["feature_0", 1]


def test_the_cards_guide_names_every_card_of_the_training_run() -> None:
    from model_training.cards import cards_guide

    (guide,) = cards_guide()
    for where in ("`register`", "`model_card`", "`average_scores`", "`train`", "card get"):
        assert where in guide._text, where

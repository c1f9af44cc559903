"""Request bodies in the server's other formats: CSV and Parquet, and Parquet bombs."""

from __future__ import annotations

import io
from typing import Any


def parquet_body(rows: int) -> bytes:
    """A Parquet file of `rows` identical rows: a few kilobytes whatever `rows`, so that
    3,000,000 rows fit in a 72 KB request (issue 21's bomb)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"island": pa.array(["Biscoe"] * rows)}), buffer, compression="zstd")
    return buffer.getvalue()


def parquet_rows(rows: list[dict[str, Any]]) -> bytes:
    """`rows` as a Parquet file, as pandas writes a DataFrame of them."""
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer)
    return buffer.getvalue()


def csv_rows(rows: list[dict[str, Any]]) -> bytes:
    """`rows` as CSV with a header line, a missing value as an empty field."""
    import pandas as pd

    return pd.DataFrame(rows).to_csv(index=False).encode()

"""Tests for inference.request_guard, through the model served by a real `mlflow models
serve`, over real HTTP, capturing in SQLite: what every kind of request is answered.

One server (2 workers, at most 50 rows per request) is shared by these tests
(`inference_server` in support/serving.py); the kill -9 test gets one of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.rows import SPEC_ROW

from backends.local_server import ping

# The body of the spec's (and the README's) curl example, byte for byte.
SPEC_CURL_BODY = """{"inputs": [
  {"island": "Biscoe", "culmen_length_mm": 48.6, "culmen_depth_mm": 16.0,
   "flipper_length_mm": 230.0, "body_mass_g": 5800.0, "sex": "MALE"}]}"""
TYPICAL_ROWS = [
    SPEC_ROW,
    {
        "island": "Torgersen",
        "culmen_length_mm": 39.1,
        "culmen_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "MALE",
    },
    {
        "island": "Dream",
        "culmen_length_mm": 49.5,
        "culmen_depth_mm": 19.0,
        "flipper_length_mm": 200.0,
        "body_mass_g": 3800.0,
        "sex": "FEMALE",
    },
]
CLASSES = {"Adelie", "Chinstrap", "Gentoo"}
MAX_BATCH_SIZE = 50  # inference_server's SERVING_MAX_BATCH_SIZE


def connection(url: str, timeout: float = 60) -> http.client.HTTPConnection:
    parsed = urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)


def post(
    url: str,
    body: str | bytes,
    content_type: str = "application/json",
    client: http.client.HTTPConnection | None = None,
) -> tuple[int, str]:
    """POST `body` to the invocations `url`; return the status and the body as text."""
    own = client is None
    client = client or connection(url)
    try:
        client.request(
            "POST", urlparse(url).path, body=body, headers={"Content-Type": content_type}
        )
        response = client.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        if own:
            client.close()


def predict(url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    status, text = post(url, json.dumps({"inputs": rows}))
    assert status == 200, text
    return json.loads(text)["predictions"]


def count(server) -> int:
    with sqlite3.connect(server.database) as db:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def captured(server, ids: list[str]) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        marks = ",".join("?" * len(ids))
        rows = db.execute(f"SELECT * FROM predictions WHERE id IN ({marks})", ids).fetchall()
    return {row["id"]: {**dict(row), "inputs": json.loads(row["inputs"])} for row in rows}


# --- good requests -------------------------------------------------------------------------


def test_one_row_gets_prediction_confidence_and_id_captured_under_it(server) -> None:
    before = count(server)
    (prediction,) = predict(server.url, [SPEC_ROW])

    assert set(prediction) == {"prediction", "confidence", "id"}
    assert prediction["prediction"] == "Gentoo"
    assert 0.5 < prediction["confidence"] <= 1
    assert re.fullmatch(r"[0-9a-f]{32}", prediction["id"])

    assert count(server) == before + 1
    row = captured(server, [prediction["id"]])[prediction["id"]]
    assert row["prediction"] == prediction["prediction"]
    assert row["confidence"] == pytest.approx(prediction["confidence"])
    assert row["model_version"] == server.version
    assert row["inputs"] == SPEC_ROW
    assert row["ground_truth"] is None
    assert abs(row["created_at"] - time.time()) < 120


def test_the_spec_curl_request_works(server) -> None:
    status, text = post(server.url, SPEC_CURL_BODY, "application/json; charset=utf-8")
    assert status == 200, text
    (prediction,) = json.loads(text)["predictions"]
    assert prediction["prediction"] == "Gentoo"
    assert prediction["id"] in captured(server, [prediction["id"]])


def test_several_rows_get_one_prediction_each_in_order(server) -> None:
    predictions = predict(server.url, TYPICAL_ROWS)
    assert [p["prediction"] for p in predictions] == ["Gentoo", "Adelie", "Chinstrap"]
    assert len({p["id"] for p in predictions}) == 3
    rows = captured(server, [p["id"] for p in predictions])
    for row, prediction in zip(TYPICAL_ROWS, predictions, strict=True):
        assert rows[prediction["id"]]["inputs"] == row
        assert rows[prediction["id"]]["prediction"] == prediction["prediction"]


def test_missing_optional_fields_are_imputed(server) -> None:
    rows = [{"island": "Biscoe", "flipper_length_mm": 225.0}, {}]
    predictions = predict(server.url, rows)
    assert len(predictions) == 2
    assert all(p["prediction"] in CLASSES for p in predictions)
    stored = captured(server, [p["id"] for p in predictions])
    assert stored[predictions[0]["id"]]["inputs"]["culmen_length_mm"] is None
    assert stored[predictions[0]["id"]]["inputs"]["island"] == "Biscoe"


def test_null_values_are_imputed(server) -> None:
    row = {**SPEC_ROW, "culmen_depth_mm": None, "sex": None}
    (prediction,) = predict(server.url, [row])
    assert prediction["prediction"] in CLASSES
    assert captured(server, [prediction["id"]])[prediction["id"]]["inputs"] == row


def test_empty_inputs_get_empty_predictions(server) -> None:
    before = count(server)
    status, text = post(server.url, '{"inputs": []}')
    assert (status, json.loads(text)) == (200, {"predictions": []})
    assert count(server) == before


def test_the_maximum_batch_size_is_accepted(server) -> None:
    before = count(server)
    predictions = predict(server.url, [TYPICAL_ROWS[i % 3] for i in range(MAX_BATCH_SIZE)])
    assert len({p["id"] for p in predictions}) == MAX_BATCH_SIZE
    assert count(server) == before + MAX_BATCH_SIZE


# --- bad requests --------------------------------------------------------------------------


def inputs(*rows: dict[str, Any]) -> str:
    return json.dumps({"inputs": list(rows)})


ISLANDS = ["Biscoe", "Dream", "Torgersen"]
BAD_REQUESTS = {
    # name: (body, fragments the message must contain)
    "malformed JSON": ('{"inputs": [{"island": "Biscoe"', ["JSON"]),
    "not JSON at all": ("island=Biscoe", ["JSON"]),
    "top-level list": (json.dumps([SPEC_ROW]), ["object", "inputs"]),
    "missing inputs": (json.dumps({"rows": [SPEC_ROW]}), ["inputs"]),
    "inputs not a list": (json.dumps({"inputs": SPEC_ROW}), ["inputs"]),
    "rows not objects": (json.dumps({"inputs": [[48.6, 16.0]]}), ["inputs"]),
    "string for a number": (
        inputs({**SPEC_ROW, "culmen_length_mm": "48.6"}),
        ["Row 0", "culmen_length_mm"],
    ),
    "boolean for a number": (inputs({**SPEC_ROW, "body_mass_g": True}), ["Row 0", "body_mass_g"]),
    "boolean for a number in the second row": (
        inputs(SPEC_ROW, {**SPEC_ROW, "body_mass_g": True}),
        ["Row 1", "body_mass_g"],
    ),
    "list for a number": (inputs({**SPEC_ROW, "body_mass_g": [5800.0]}), ["body_mass_g"]),
    "object for a category": (inputs({**SPEC_ROW, "island": {"name": "Biscoe"}}), ["island"]),
    "list for a category": (inputs({**SPEC_ROW, "island": ["Biscoe"]}), ["island"]),
    "number for a category": (inputs({**SPEC_ROW, "island": 3}), ["Row 0", "island", *ISLANDS]),
    "unknown category": (
        inputs({**SPEC_ROW, "island": "Atlantis"}),
        ["Row 0", "island", "Atlantis", *ISLANDS],
    ),
    "unknown category in the third row": (
        inputs(SPEC_ROW, SPEC_ROW, {**SPEC_ROW, "island": "Atlantis"}),
        ["Row 2", "island", "Atlantis"],
    ),
    "NaN literal": (
        '{"inputs": [{"island": "Biscoe", "culmen_length_mm": NaN}]}',
        ["NaN", "culmen_length_mm"],
    ),
    "Infinity literal": (
        '{"inputs": [{"island": "Biscoe", "body_mass_g": Infinity}]}',
        ["Infinity", "body_mass_g"],
    ),
    "-Infinity literal": (
        '{"inputs": [{"island": "Biscoe", "body_mass_g": -Infinity}]}',
        ["Infinity", "body_mass_g"],
    ),
    "1e400": ('{"inputs": [{"island": "Biscoe", "body_mass_g": 1e400}]}', ["body_mass_g"]),
    "400-digit integer": (
        '{"inputs": [{"island": "Biscoe", "body_mass_g": 1' + "0" * 400 + "}]}",
        ["body_mass_g"],
    ),
    "more rows than the maximum": (
        inputs(*[SPEC_ROW] * (MAX_BATCH_SIZE + 1)),
        [str(MAX_BATCH_SIZE + 1), str(MAX_BATCH_SIZE)],
    ),
    "unknown field": (inputs({**SPEC_ROW, "wingspan_mm": 30.0}), ["wingspan_mm"]),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_a_short_4xx_and_stores_nothing(server, case: str) -> None:
    body, fragments = BAD_REQUESTS[case]
    before = count(server)

    status, text = post(server.url, body)

    assert 400 <= status < 500, f"{status}: {text[:300]}"
    message = json.loads(text)["message"]
    assert len(message) < 500, message
    assert "Traceback" not in text and 'File "' not in text, text
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert ping(server.url), "the server went down"
    assert count(server) == before


def test_the_server_answers_after_bad_requests(server) -> None:
    for body, _ in BAD_REQUESTS.values():
        post(server.url, body)
    assert ping(server.url)
    (prediction,) = predict(server.url, [SPEC_ROW])
    assert prediction["prediction"] == "Gentoo"


# --- any body at all: a JSON 4xx or an answer, never a 500 ---------------------------------

FEATURES = [*TYPICAL_ROWS[0]]
FORMAT_KEYS = ["inputs", "dataframe_records", "dataframe_split", "instances", "params"]


@pytest.fixture(scope="module")
def invocations(serving_models, tmp_path_factory) -> Iterator[Callable[[bytes], Any]]:
    """The scoring server's `invocations` with the request guard installed, in process.

    The model is loaded as `mlflow models serve` loads it, after importing its scoring
    server: `load_context` then wraps `invocations` (the guard) around MLflow's own. The
    real server calls exactly that with the request's bytes and content type.
    """
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    original = scoring_server.invocations
    settings = {
        "SERVING_MAX_BATCH_SIZE": str(MAX_BATCH_SIZE),
        "SERVING_CAPTURE_DATABASE": str(tmp_path_factory.mktemp("guard") / "capture.db"),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        model = mlflow.pyfunc.load_model(serving_models.uri(serving_models.good[0]))
        guarded = scoring_server.invocations
        assert getattr(guarded, "_guarded", False), "loading the model installed no guard"
        schema = model.metadata.get_input_schema()
        yield lambda body: guarded(body, "application/json", model, schema)
    finally:
        scoring_server.invocations = original
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def assert_json_4xx_or_answer(answer: Any, body: bytes) -> None:
    """A 200 with one prediction per row sent, or a 4xx whose body is a JSON error."""
    status, text, mimetype = answer.status, answer.response, answer.mimetype
    assert status == 200 or 400 <= status < 500, f"{status} for {body[:200]!r}: {text[:300]}"
    assert mimetype == "application/json", f"{mimetype} for {body[:200]!r}"
    payload = json.loads(text)
    if status == 200:
        assert isinstance(payload["predictions"], list)
        try:
            rows = json.loads(body)["inputs"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return  # another of MLflow's formats, answered by MLflow
        assert len(payload["predictions"]) == len(rows)
        assert all(p["prediction"] in CLASSES for p in payload["predictions"])
    else:
        assert isinstance(payload["message"], str) and len(payload["message"]) <= 500
        assert isinstance(payload["error_code"], str)


def nested(depth: int, opening: str, closing: str, core: str = "1") -> str:
    return opening * depth + core + closing * depth


def in_row(field: str, raw_json: str) -> str:
    """A one-row request whose `field` is `raw_json`, as written."""
    return '{"inputs": [{"' + field + '": ' + raw_json + "}]}"


# Values of every JSON kind, at any depth, with huge numbers and long strings among them.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**4000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.sampled_from(["Biscoe", "Dream", "Torgersen", "MALE", "FEMALE"])
    | st.integers(1, 200_000).map(lambda n: "x" * n)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FEATURES + FORMAT_KEYS) | st.text(max_size=10), children,
                      max_size=5),
    max_leaves=30,
)  # fmt: skip
row_values = st.one_of(
    st.floats(0, 6000),
    st.sampled_from(["Biscoe", "Dream", "Torgersen", "MALE", "FEMALE"]),
    json_values,
)
rows = st.lists(
    st.dictionaries(st.sampled_from(FEATURES), row_values, max_size=len(FEATURES))
    | st.dictionaries(st.sampled_from(FEATURES) | st.text(max_size=20), json_values, max_size=8),
    max_size=MAX_BATCH_SIZE + 5,
)
# Bodies that read as JSON only in part, or nest deeper than any parser recurses.
pathological = st.one_of(
    st.integers(1, 100_000).map(lambda n: nested(n, "[", "]")),
    st.integers(1, 100_000).map(lambda n: nested(n, '{"a": ', "}")),
    st.integers(1, 100_000).map(lambda n: "[" * n),
    st.integers(1, 100_000).map(lambda n: json.dumps({"inputs": "@"}).replace('"@"', "[" * n)),
    st.tuples(st.sampled_from(FORMAT_KEYS), st.integers(1, 50_000)).map(
        lambda kd: '{"' + kd[0] + '": ' + nested(kd[1], "[", "]") + "}"
    ),
    st.tuples(st.sampled_from(FEATURES), st.integers(1, 50_000)).map(
        lambda fd: in_row(fd[0], nested(fd[1], "[", "]"))
    ),
    st.integers(1, 20_000).map(lambda n: in_row("body_mass_g", "1" + "0" * n)),
    st.integers(1, 100_000).map(lambda n: in_row("island", f"1e{n}")),
)
GUARD_SETTINGS = settings(
    max_examples=150,
    deadline=None,  # the machine is shared: no timing in tests
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@GUARD_SETTINGS
@given(body=st.binary(max_size=4096))
def test_any_bytes_get_a_json_4xx_or_an_answer(invocations, body: bytes) -> None:
    assert_json_4xx_or_answer(invocations(body), body)


@GUARD_SETTINGS
@given(value=json_values)
def test_any_json_gets_a_json_4xx_or_an_answer(invocations, value: Any) -> None:
    body = json.dumps(value).encode()
    assert_json_4xx_or_answer(invocations(body), body)


@GUARD_SETTINGS
@given(batch=rows)
def test_any_rows_get_a_json_4xx_or_an_answer(invocations, batch: list) -> None:
    body = json.dumps({"inputs": batch}).encode()
    assert_json_4xx_or_answer(invocations(body), body)


@GUARD_SETTINGS
@given(key=st.sampled_from(FORMAT_KEYS[1:]), value=json_values)
def test_mlflows_other_formats_get_a_json_4xx_or_an_answer(invocations, key, value) -> None:
    body = json.dumps({key: value}).encode()
    assert_json_4xx_or_answer(invocations(body), body)


@GUARD_SETTINGS
@given(body=pathological)
def test_pathological_bodies_get_a_json_4xx_or_an_answer(invocations, body: str) -> None:
    assert_json_4xx_or_answer(invocations(body.encode()), body.encode())


def test_thousands_of_nesting_levels_get_a_400_saying_so(invocations) -> None:
    answer = invocations(nested(10_000, "[", "]").encode())
    assert answer.status == 400
    assert json.loads(answer.response)["message"].startswith("The JSON nests too deeply")


def test_the_real_server_stays_healthy_after_pathological_bodies(server) -> None:
    before = count(server)
    bodies = [
        nested(100_000, "[", "]"),
        nested(5_000, '{"a": ', "}"),
        in_row("island", nested(20_000, "[", "]")),
        '{"dataframe_records": ' + nested(20_000, "[", "]") + "}",
        in_row("body_mass_g", "1" + "0" * 100_000),
        json.dumps({"inputs": [{**SPEC_ROW, "island": "x" * 1_000_000}]}),
        "[" * 200_000,
    ]
    for body in bodies:
        status, text = post(server.url, body)
        assert 400 <= status < 500, f"{status}: {text[:300]}"
        assert "message" in json.loads(text)
    assert ping(server.url)
    (prediction,) = predict(server.url, [SPEC_ROW])
    assert prediction["prediction"] == "Gentoo"
    assert count(server) == before + 1


# --- capture under concurrency and failure ---------------------------------------------------


@dataclass
class LoadResult:
    before: int
    after: int
    answers: list[tuple[int, int, list[str], str]]  # status, rows sent, ids, body
    failures: list[BaseException]


@pytest.fixture(scope="module")
def concurrent_load(inference_server) -> LoadResult:
    """16 clients x 25 requests of 1-5 rows each, at once, on keep-alive connections."""
    server = inference_server
    server.ensure_running()
    clients, requests_each = 16, 25
    results: list[list[tuple[int, int, list[str], str]]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []

    def client(number: int) -> None:
        generator = random.Random(number)
        keep_alive = connection(server.url)
        try:
            for _ in range(requests_each):
                rows = [generator.choice(TYPICAL_ROWS) for _ in range(generator.randint(1, 5))]
                status, text = post(server.url, inputs(*rows), client=keep_alive)
                ids = [p["id"] for p in json.loads(text)["predictions"]] if status == 200 else []
                results[number].append((status, len(rows), ids, text[:300]))
        except BaseException as error:  # reported by the tests
            failures.append(error)
        finally:
            keep_alive.close()

    before = count(server)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    answers = [answer for per_client in results for answer in per_client]
    return LoadResult(before, count(server), answers, failures)


def test_16_concurrent_clients_lose_no_capture(server, concurrent_load: LoadResult) -> None:
    load = concurrent_load
    assert not load.failures, load.failures
    assert len(load.answers) == 16 * 25
    answered_ids = [i for status, _, ids, _ in load.answers if status == 200 for i in ids]
    assert all(len(ids) == rows for status, rows, ids, _ in load.answers if status == 200)
    assert len(set(answered_ids)) == len(answered_ids)

    assert load.after - load.before == len(answered_ids)
    assert set(captured(server, answered_ids)) == set(answered_ids)


def test_16_concurrent_clients_all_get_answers(concurrent_load: LoadResult) -> None:
    errors = [(status, body) for status, _, _, body in concurrent_load.answers if status != 200]
    assert errors == [], f"{len(errors)} of {len(concurrent_load.answers)} failed: {errors[:3]}"


def test_a_capture_that_cannot_be_written_fails_the_request(server) -> None:
    before = count(server)
    with sqlite3.connect(server.database) as db:
        db.execute(
            "CREATE TRIGGER refuse_capture BEFORE INSERT ON predictions "
            "BEGIN SELECT RAISE(ABORT, 'capture refused by the test'); END"
        )
    try:
        # Several requests, so that both workers meet the failure.
        answers = [post(server.url, inputs(SPEC_ROW)) for _ in range(6)]
    finally:
        with sqlite3.connect(server.database) as db:
            db.execute("DROP TRIGGER refuse_capture")

    for status, text in answers:
        assert status == 503, f"{status}: {text[:300]}"
        message = json.loads(text)["message"]
        assert len(message) < 500 and "Traceback" not in text
    assert count(server) == before
    # Once the database takes writes again, so does the server.
    (prediction,) = predict(server.url, [SPEC_ROW])
    assert prediction["id"] in captured(server, [prediction["id"]])


def test_a_locked_database_delays_the_answer_instead_of_losing_it(server) -> None:
    before = count(server)
    answer: list[tuple[int, str]] = []
    blocker = sqlite3.connect(server.database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        request = threading.Thread(target=lambda: answer.append(post(server.url, inputs(SPEC_ROW))))
        started = time.monotonic()
        request.start()
        time.sleep(1.5)
        assert not answer, f"answered while the database was locked: {answer}"
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    request.join(timeout=60)
    elapsed = time.monotonic() - started

    (status, text) = answer[0]
    assert status == 200, text
    assert elapsed >= 1.4
    (prediction,) = json.loads(text)["predictions"]
    assert prediction["id"] in captured(server, [prediction["id"]])
    assert count(server) == before + 1


@pytest.mark.own_server
def test_kill_9_mid_load_loses_no_answered_capture(server) -> None:
    """It ends its server: one of its own (`own_server`), not the shared one."""
    answered: list[str] = []
    done = threading.Event()

    def load() -> None:
        keep_alive = connection(server.url, timeout=10)
        number = 0
        try:
            while not done.is_set():
                number += 1
                rows = [TYPICAL_ROWS[number % 3]] * (1 + number % 4)
                try:
                    status, text = post(server.url, inputs(*rows), client=keep_alive)
                except (OSError, http.client.HTTPException):
                    return  # The server is gone.
                if status == 200:
                    answered.extend(p["id"] for p in json.loads(text)["predictions"])
        finally:
            keep_alive.close()

    thread = threading.Thread(target=load)
    thread.start()
    killed = False
    try:
        deadline = time.monotonic() + 60
        while len(answered) < 40 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        assert len(answered) >= 40, "the load did not get going"
        os.killpg(server.pid, signal.SIGKILL)
        killed = True
        thread.join(timeout=30)  # The load stops when the server is gone.
    finally:
        done.set()
        thread.join(timeout=30)
        server.stop()  # Reaps the killed process.

    assert killed and not thread.is_alive()

    assert not ping(server.url)
    stored = captured(server, answered)
    missing = [identifier for identifier in answered if identifier not in stored]
    assert missing == [], f"{len(missing)} of {len(answered)} answered predictions were lost"


def test_the_model_loaded_last_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second model loaded in one process replaces the guard; it does not stack on it."""
    import sys
    import types

    from inference.request_guard import install_request_guard

    calls: list[str] = []

    def mlflows_own(data, content_type, model, input_schema):
        calls.append(f"mlflow:{model}")
        return "mlflow answered"

    fake = types.SimpleNamespace(invocations=mlflows_own, InvocationsResponse=tuple)
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc.scoring_server", fake)
    install_request_guard(None, 10, lambda columns: (["a"], [1.0], ["1"]))  # type: ignore[arg-type]
    first = fake.invocations
    install_request_guard(None, 10, lambda columns: (["b"], [1.0], ["2"]))  # type: ignore[arg-type]

    assert fake.invocations is not first
    assert fake.invocations._original is mlflows_own
    # A format the guard leaves to MLflow reaches MLflow's handler once, not via `first`.
    assert fake.invocations(b"x", "text/csv", "model", None) == "mlflow answered"
    assert calls == ["mlflow:model"]


# --- content types, sizes and paths, over HTTP (issue 21) -----------------------------------


def send(
    url: str, body: bytes, headers: dict[str, str], path: str | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], str]:
    """One request with exactly `headers` (http.client adds only Host and Content-Length)."""
    client = connection(url)
    try:
        client.request(method, path or urlparse(url).path, body=body, headers=headers)
        response = client.getresponse()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer_headers, response.read().decode(errors="replace")
    finally:
        client.close()


ACCEPTED_TYPES = ["application/json", "text/csv", "application/vnd.apache.parquet"]


def test_a_request_without_a_content_type_gets_a_415_naming_the_accepted_ones(server) -> None:
    before = count(server)
    status, headers, text = send(server.url, inputs(SPEC_ROW).encode(), {})
    assert status == 415, text  # a 500 with a traceback before
    assert headers["content-type"] == "application/json"
    message = json.loads(text)["message"]
    assert all(kind in message for kind in ACCEPTED_TYPES), message
    assert count(server) == before


@pytest.mark.parametrize(
    "content_type",
    ["Application/JSON", "APPLICATION/JSON; CHARSET=UTF-8", "application/json;charset=utf-8"],
)
def test_json_is_taken_whatever_the_capitals_of_its_content_type(server, content_type) -> None:
    status, text = post(server.url, inputs(SPEC_ROW), content_type)
    assert status == 200, text  # a 415 before
    assert json.loads(text)["predictions"][0]["prediction"] == "Gentoo"


@pytest.mark.parametrize("content_type", ["text/csv", "Text/CSV; charset=utf-8"])
def test_csv_rows_are_answered_and_captured_like_json_ones(server, content_type) -> None:
    """The 415 message advertises CSV: it works (before, every CSV got a 400)."""
    from support.request_bodies import csv_rows

    rows = [*TYPICAL_ROWS, {**SPEC_ROW, "sex": None, "culmen_depth_mm": None}]
    status, text = post(server.url, csv_rows(rows), content_type)
    assert status == 200, text
    predictions = json.loads(text)["predictions"]
    assert [p["prediction"] for p in predictions] == [
        p["prediction"] for p in predict(server.url, rows)
    ]
    stored = captured(server, [p["id"] for p in predictions])
    assert [stored[p["id"]]["inputs"]["island"] for p in predictions] == [r["island"] for r in rows]


def test_a_csv_row_with_a_field_too_many_is_refused_not_shifted(server) -> None:
    """Rows with a trailing comma the header lacks: pandas would shift every field."""
    before = count(server)
    body = (
        "island,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g,sex\n"
        "Biscoe,48.6,16.0,230.0,5800.0,MALE,\n"
    )
    status, text = post(server.url, body, "text/csv")
    assert status == 400, text
    assert json.loads(text)["message"] == "Row 0: 7 fields, but the header names 6."
    assert count(server) == before


def test_parquet_rows_are_answered_and_captured(server) -> None:
    from support.request_bodies import parquet_rows

    status, text = post(server.url, parquet_rows(TYPICAL_ROWS), "application/vnd.apache.parquet")
    assert status == 200, text
    predictions = json.loads(text)["predictions"]
    assert [p["prediction"] for p in predictions] == ["Gentoo", "Adelie", "Chinstrap"]
    assert len(captured(server, [p["id"] for p in predictions])) == 3


def test_a_parquet_bomb_is_refused_before_it_is_decoded(server) -> None:
    """72 KB that decode to 3,000,000 rows: 25 s and 650 MB of a worker before."""
    from support.request_bodies import parquet_body

    before = count(server)
    bomb = parquet_body(3_000_000)
    started = time.monotonic()
    status, text = post(server.url, bomb, "application/vnd.apache.parquet")
    assert status == 413, text
    assert json.loads(text)["message"].startswith("Too many rows: 3000000;")
    assert time.monotonic() - started < 5  # the machine is shared: no tighter bound here
    assert count(server) == before and ping(server.url)


def test_a_csv_of_too_many_lines_is_refused_before_it_is_decoded(server) -> None:
    body = "island,sex\n" + "Biscoe,MALE\n" * (MAX_BATCH_SIZE + 1)
    status, text = post(server.url, body, "text/csv")
    assert status == 413, text
    assert f"Too many rows: {MAX_BATCH_SIZE + 1};" in json.loads(text)["message"]


def read_answer(sock, timeout: float = 30) -> tuple[int, bytes]:
    """The status and body of the HTTP answer on `sock` (it has a Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server) -> None:
    """The answer comes from the headers: the 2 MiB are never sent."""
    import socket

    parsed = urlparse(server.url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2097152\r\n\r\n" + b'{"inputs": ['
        )
        status, body = read_answer(sock)
    assert status == 413
    assert "max_request_bytes" in json.loads(body)["message"]


def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(server) -> None:
    import socket

    parsed = urlparse(server.url)
    chunk = b" " * 65536
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(32):  # 2 MiB: the server answers after 1 MiB, and drops the rest
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
        status, body = read_answer(sock)
    assert status == 413
    assert "max_request_bytes" in json.loads(body)["message"]


def test_a_body_sent_slowly_within_the_timeout_is_answered(server) -> None:
    import socket

    body = inputs(SPEC_ROW).encode()
    parsed = urlparse(server.url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), 40):
            sock.sendall(body[start : start + 40])
            time.sleep(0.1)
        status, answer = read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["predictions"][0]["prediction"] == "Gentoo"


@pytest.mark.parametrize("path", ["/version", "/docs", "/openapi.json"])
def test_only_invocations_and_the_health_check_are_served(server, path: str) -> None:
    status, _, text = send(server.url, b"", {}, path=path, method="GET")
    assert status == 404, text  # /version told MLflow's version before
    assert "/invocations" in json.loads(text)["message"]
    assert ping(server.url)


HTTP_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
content_types = st.one_of(
    st.none(),
    printable,
    st.sampled_from(ACCEPTED_TYPES).map(lambda kind: "".join(
        c.upper() if i % 2 else c for i, c in enumerate(kind))),
    st.tuples(st.sampled_from(ACCEPTED_TYPES), printable).map(lambda kp: f"{kp[0]}; {kp[1]}"),
)  # fmt: skip
header_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=1, max_size=20)
odd_headers = st.dictionaries(
    header_names.filter(lambda name: name not in ("content-length", "transfer-encoding", "host")),
    printable.map(str.strip),
    max_size=4,
)


@HTTP_SETTINGS
@given(content_type=content_types, extra=odd_headers, rows=st.integers(0, MAX_BATCH_SIZE + 3),
       kind=st.sampled_from(ACCEPTED_TYPES))  # fmt: skip
def test_any_content_type_and_headers_get_a_json_4xx_or_an_answer_over_http(
    server, content_type, extra, rows, kind
) -> None:
    from support.request_bodies import csv_rows, parquet_rows

    batch = [TYPICAL_ROWS[i % 3] for i in range(rows)]
    body = {
        "application/json": lambda: inputs(*batch).encode(),
        "text/csv": lambda: csv_rows(batch) if batch else b"island\n",
        "application/vnd.apache.parquet": lambda: parquet_rows(batch or [{"island": None}]),
    }[kind]()
    headers = {**extra, **({"Content-Type": content_type} if content_type is not None else {})}
    status, answer_headers, text = send(server.url, body, headers)
    assert status == 200 or 400 <= status < 500, f"{status} for {headers}: {text[:300]}"
    assert answer_headers["content-type"] == "application/json", text[:300]
    if status != 200:
        assert isinstance(json.loads(text)["message"], str)


# --- the HTTP guard around MLflow's scoring app, in process ---------------------------------

APP_LIMIT = 4096  # bytes: small, so that the examples reach it cheaply


@pytest.fixture(scope="module")
def scoring_app(serving_models, tmp_path_factory, invocations) -> Any:
    """MLflow's scoring app for the model, behind the HTTP guard, as a server builds them."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    from inference.http_guard import HttpGuard, HttpLimits

    flag = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
    saved = os.environ.get(flag)
    os.environ["SERVING_CAPTURE_DATABASE"] = str(tmp_path_factory.mktemp("app") / "capture.db")
    try:
        model = mlflow.pyfunc.load_model(serving_models.uri(serving_models.good[0]))
        app = scoring_server.init(model)
        yield HttpGuard(app, HttpLimits(None, APP_LIMIT, MAX_BATCH_SIZE))
    finally:
        os.environ.pop("SERVING_CAPTURE_DATABASE", None)
        if saved is None:
            os.environ.pop(flag, None)
        else:
            os.environ[flag] = saved


bodies = st.one_of(
    st.binary(max_size=APP_LIMIT + 200),
    rows.map(lambda batch: json.dumps({"inputs": batch}).encode()),
    st.integers(APP_LIMIT - 20, APP_LIMIT + 20).map(lambda n: b" " * n),
    st.integers(0, 80).map(lambda n: b"island,sex\n" + b"Biscoe,MALE\n" * n),
)


@GUARD_SETTINGS
@given(content_type=content_types.map(lambda t: None if t is None else t.encode()), body=bodies,
       pieces=st.lists(st.integers(1, 400), max_size=6), slowly=st.booleans(),
       declared=st.booleans(), extra=odd_headers)  # fmt: skip
def test_any_request_gets_a_json_4xx_or_an_answer_in_process(
    scoring_app, content_type, body, pieces, slowly, declared, extra
) -> None:
    """Oversized bodies get 413 however they arrive (declared or streamed, in one piece or
    many, slowly or not); anything else a JSON 4xx or an answer."""
    from support.asgi import call

    from inference.request_formats import UnsupportedMediaType, media_type

    chunks, rest = [], body
    for size in pieces:
        chunks, rest = [*chunks, rest[:size]], rest[size:]
    headers = [(name.encode(), value.encode()) for name, value in extra.items()]
    headers += [(b"content-type", content_type)] if content_type is not None else []
    headers += [(b"content-length", str(len(body)).encode())] if declared else []
    answer = call(scoring_app, headers=headers, chunks=[*chunks, rest], pause=0.002 * slowly)

    assert answer.status == 200 or 400 <= answer.status < 500, (answer, body[:200])
    assert answer.headers[b"content-type"] == b"application/json", answer
    try:
        media_type(content_type)
    except UnsupportedMediaType:
        assert answer.status == 415, answer
        return
    if len(body) > APP_LIMIT:
        assert answer.status == 413, answer
    if answer.status != 200:
        assert isinstance(answer.json()["message"], str) and len(answer.json()["message"]) <= 500

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

"""The batch input check on its own: each rule's error, line numbers as an editor shows them,
body spans that are the body's bytes as written whatever the text before them, the same
answer however the bytes are cut into chunks, the limits, and the stream that feeds it off
the event loop."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from openai_files.server import batch_input, settings
from openai_files.server.batch_input import BatchError, InputIndex, RequestLine, index_stream

EP = "/v1/chat/completions"


def line(
    custom_id: Any = "r",
    body: str = '{"model": "m"}',
    *,
    method: Any = "POST",
    url: Any = EP,
    before: str = "",
    after: str = "",
) -> bytes:
    """A request line whose body is `body` as written; `before`/`after` are more members
    (text ending or starting with a comma), placed before and after the body."""
    head = f'{{"custom_id": {json.dumps(custom_id, ensure_ascii=False)}, "method": '
    head += f'{json.dumps(method)}, "url": {json.dumps(url)}, {before}"body": '
    return (head + body + after + "}").encode()


def without(*names: str) -> bytes:
    """A request line without the fields `names`."""
    full = {"custom_id": "r", "method": "POST", "url": EP, "body": {}}
    return json.dumps({k: v for k, v in full.items() if k not in names}).encode()


def run(
    data: bytes, chunks: Iterable[bytes | memoryview] | None = None, **limits: int
) -> tuple[list[RequestLine], InputIndex]:
    index = InputIndex(EP, **limits)
    got: list[RequestLine] = []
    for chunk in [data] if chunks is None else chunks:
        got += index.feed(chunk)
    got += index.finish()
    return got, index


def errors(index: InputIndex) -> list[tuple[str, str | None, int | None]]:
    return [(e.code, e.param, e.line) for e in index.errors]


def check_spans(data: bytes, got: list[RequestLine], bodies: list[str]) -> None:
    """Each request's span holds its body's bytes as written, and parses to the body."""
    assert len(got) == len(bodies)
    for request, body in zip(got, bodies, strict=True):
        span = data[request.body_offset : request.body_offset + request.body_length]
        assert span == body.encode(), (request, body)
        assert json.loads(span) == json.loads(body)


# A file with a bit of everything a valid file may hold: non-ASCII text before and in the
# body, bodies nested, spaced, escaped, first or last, blank lines, CRLF, no final newline.
GOOD_BODIES = [
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "héllo 日本"}]}',
    '{"model":"m","a":{"b":{"c":[1,{"d":"}"}]}},"body":{"body":1}}',
    '{ "x" : "\\"quoted\\" \\\\ and \\u00e9 and \\ud83d\\ude00" }',
    "{}",
    '{"model": 5}',
    '{"model": "ü-model", "input": "😀"}',
]
GOOD = b"".join(
    [
        line("é-1", GOOD_BODIES[0]) + b"\n",
        b"\n",
        line("two", GOOD_BODIES[1], before='"note": "ünïcödé text 日本語 😀", ') + b"\r\n",
        b"   \t\r\n",
        b'  {"body" :  ' + GOOD_BODIES[2].encode() + b', "custom_id": "3", "method": "POST", '
        b'"url": "/v1/chat/completions"}  \r\n',
        line("4 ☃", GOOD_BODIES[3], after=', "extra": {"k": ["v"]}') + b"\n",
        b"\n\n",
        line("\\u0035", GOOD_BODIES[4]).replace(b"\\\\", b"\\") + b"\n",  # "\u0035": "5"
        line("6", GOOD_BODIES[5]),  # no final newline
    ]
)
GOOD_LINES = [1, 3, 5, 6, 9, 10]


def test_a_good_file_is_indexed_with_its_body_spans() -> None:
    got, index = run(GOOD)
    assert index.errors == [] and index.error_count == 0
    assert [r.line for r in got] == GOOD_LINES
    assert [r.custom_id for r in got] == ["é-1", "two", "3", "4 ☃", "5", "6"]
    assert [r.model for r in got] == ["gpt-4o", "m", None, None, None, "ü-model"]
    assert index.requests == 6
    check_spans(GOOD, got, GOOD_BODIES)


def test_chunk_boundaries_do_not_matter() -> None:
    """The file cut in two at every byte (inside characters of several bytes, between \\r
    and \\n), and byte by byte, gives the same index and the same errors."""
    bad = b"\n" + line("two-b", method="GET") + b"\n[]\n" + line("é-1", "{}") + b"\n"
    data = GOOD + b"\n" + bad + line("x", "[1]")
    want, want_index = run(data)
    assert errors(want_index) == [
        ("invalid_request", "method", 12),
        ("invalid_json_line", None, 13),
        ("duplicate_custom_id", "custom_id", 14),
        ("invalid_request", "body", 15),
    ]
    check_spans(data, want, GOOD_BODIES)
    for cut in range(len(data) + 1):
        got, index = run(data, [data[:cut], data[cut:]])
        assert got == want, cut
        assert index.errors == want_index.errors, cut
    got, index = run(data, [data[i : i + 1] for i in range(len(data))])
    assert (got, index.errors) == (want, want_index.errors)
    got, index = run(data, [memoryview(data)[i : i + 7] for i in range(0, len(data), 7)])
    assert (got, index.errors) == (want, want_index.errors)


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        (b"not json", "invalid_json_line", None),
        (b"[1, 2]", "invalid_json_line", None),
        (b'"a string"', "invalid_json_line", None),
        (b"null", "invalid_json_line", None),
        (line()[:-1], "invalid_json_line", None),  # cut short
        (line() + b" x", "invalid_json_line", None),  # more after the object
        (line() + b"{}", "invalid_json_line", None),
        (line(body='{"a": 1,}'), "invalid_json_line", None),
        (line(body='{"a": NaN}'), "invalid_json_line", None),
        (line(body='{"a": Infinity}'), "invalid_json_line", None),
        (
            line(body='{"model": "X"}').replace(b"X", b"\xff"),
            "invalid_json_line",
            None,
        ),  # not UTF-8
        (line(body='{"a": "tab\there"}'), "invalid_json_line", None),  # a control character
        (b'{"custom_id" "r"}', "invalid_json_line", None),
        (b"{custom_id: 1}", "invalid_json_line", None),
        (b"{'custom_id': 1}", "invalid_json_line", None),
        (b'{"a": 1 "b": 2}', "invalid_json_line", None),
        (b"\xef\xbb\xbf" + line(), "invalid_json_line", None),  # a byte order mark
        (line(body='{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}"), "invalid_json_line", None),
        (without("custom_id"), "missing_required_parameter", "custom_id"),
        (without("method"), "missing_required_parameter", "method"),
        (without("url"), "missing_required_parameter", "url"),
        (without("body"), "missing_required_parameter", "body"),
        (without("custom_id", "url"), "missing_required_parameter", "custom_id"),
        (b"{}", "missing_required_parameter", "custom_id"),
        (line(custom_id=5), "invalid_request", "custom_id"),
        (line(custom_id=""), "invalid_request", "custom_id"),
        (line(custom_id=None), "invalid_request", "custom_id"),
        (line(custom_id=["a"]), "invalid_request", "custom_id"),
        (line(custom_id="\\ud800").replace(b"\\\\", b"\\"), "invalid_request", "custom_id"),
        (line(method="GET"), "invalid_request", "method"),
        (line(method="post"), "invalid_request", "method"),
        (line(method=None), "invalid_request", "method"),
        (line(url="/v1/embeddings"), "invalid_url", "url"),
        (line(url="/v1/chat/completions/"), "invalid_url", "url"),
        (line(url=None), "invalid_url", "url"),
        (line(body="[]"), "invalid_request", "body"),
        (line(body='"{}"'), "invalid_request", "body"),
        (line(body="null"), "invalid_request", "body"),
        (line(body='{"model": "\\udfff"}'), "invalid_request", "body.model"),
        (line(before='"custom_id": "again", '), "invalid_request", "custom_id"),
        (line(after=', "body": {}'), "invalid_request", "body"),
        (line(after=', "extra": 1, "extra": 2'), "invalid_request", "extra"),
    ],
)
def test_each_rule_is_an_error_of_its_line(text: bytes, code: str, param: str | None) -> None:
    """The bad line (line 3, after a good one and a blank one) is the one error; the good
    lines around it are indexed."""
    data = line("first") + b"\n\n" + text + b"\n" + line("last") + b"\n"
    got, index = run(data)
    assert errors(index) == [(code, param, 3)], index.errors
    assert [r.line for r in got] == [1, 4]
    assert index.requests == 2
    assert index.errors[0].message


def test_openai_words() -> None:
    data = b"{bad\n" + b'{"method": "POST"}\n' + line(url="/v1/embeddings") + b"\n"
    _, index = run(data)
    assert [e.as_json() for e in index.errors] == [
        {
            "code": "invalid_json_line",
            "message": "This line is not parseable as valid JSON.",
            "param": None,
            "line": 1,
        },
        {
            "code": "missing_required_parameter",
            "message": "Missing required parameter: 'custom_id'.",
            "param": "custom_id",
            "line": 2,
        },
        {
            "code": "invalid_url",
            "message": "The URL provided for this request does not match the batch endpoint.",
            "param": "url",
            "line": 3,
        },
    ]


def test_a_key_twice_says_so() -> None:
    _, index = run(line(after=', "body": {"model": "other"}'))
    assert "'body' more than once" in index.errors[0].message


def test_a_duplicate_custom_id_far_away_names_both_lines() -> None:
    lines = [line(f"id-{i}", f'{{"n": {i}}}') for i in range(3000)]
    lines[2998] = line("id-1", "{}")
    got, index = run(b"\n".join(lines) + b"\n")
    assert errors(index) == [("duplicate_custom_id", "custom_id", 2999)]
    assert "'id-1' is already used by line 2" in index.errors[0].message
    assert len(got) == 2999 and got[-1].line == 3000


def test_the_model_is_read_from_the_body() -> None:
    bodies = ['{"model": "a"}', '{"model": null}', '{"x": {"model": "inner"}}', '{"model": ["a"]}']
    data = b"\n".join(line(str(i), body) for i, body in enumerate(bodies))
    got, _ = run(data)
    assert [r.model for r in got] == ["a", None, None, None]


def test_empty_files() -> None:
    for data in (b"", b"\n", b"  \r\n\t\n\n", b" "):
        got, index = run(data)
        assert got == []
        assert errors(index) == [("empty_file", None, None)], data
    # A file whose lines are all bad has their errors, not this one too.
    _, index = run(b"[]\n{}\n")
    assert [e.code for e in index.errors] == ["invalid_json_line", "missing_required_parameter"]


def test_too_many_requests_is_one_error_and_the_end() -> None:
    data = b"\n".join([line("1"), b"", line("2"), b"[]", line("4"), b"nonsense", b"[]", line("5")])
    got, index = run(data, max_requests=4)
    # line 4 counts (it is not blank): line 6 is the fifth, and nothing after it is read
    assert errors(index) == [("invalid_json_line", None, 4), ("too_many_tasks", None, 6)]
    assert [r.line for r in got] == [1, 3, 5]
    assert index.error_count == 2 and index.stopped
    assert "more than 4 requests" in index.errors[1].message
    got, index = run(data.replace(b"nonsense", b""), max_requests=4)
    assert index.errors[-1].code == "too_many_tasks" and index.errors[-1].line == 7
    assert run(data, max_requests=5)[1].errors[-1].line == 7


def test_too_many_bytes_is_one_error_and_the_end() -> None:
    data = line("1") + b"\n" + line("2") + b"\n" + line("3") + b"\n"
    got, index = run(data, max_bytes=len(data))
    assert len(got) == 3 and index.errors == []
    for chunks in ([data], [data[:-1], data[-1:]], [data[:5], data[5:]]):
        index = InputIndex(EP, max_bytes=len(data) - 1)
        got = [r for chunk in chunks for r in index.feed(chunk)]
        assert index.stopped
        assert index.feed(line("more") + b"\n") == []
        assert index.finish() == []
        # the lines wholly within the limit are read; the one it cuts is not
        assert [r.line for r in got] == [1, 2]
        assert errors(index) == [("file_too_large", None, None)]
        assert f"larger than the {len(data) - 1} maximum" in index.errors[0].message
    got, index = run(data, max_bytes=len(line("1")))  # the first line lacks its newline
    assert got == [] and errors(index) == [("file_too_large", None, None)]


def test_too_long_lines() -> None:
    """A line over the limit is an error of its own, its bytes dropped as they come; the
    lines after it are read, their spans right."""
    fits = line("fits", '{"a": "' + "x" * 50 + '"}')
    long = line("long", '{"a": "' + "y" * 51 + '"}')
    bodies = ['{"model": "m"}', '{"a": "' + "x" * 50 + '"}', '{"b": "ü"}']
    data = b"\n".join([line("1"), long, fits, b"", line("3", bodies[2]), long])
    limit = len(fits)
    want, want_index = run(data, max_line_bytes=limit)
    assert errors(want_index) == [("line_too_large", None, 2), ("line_too_large", None, 6)]
    assert want_index.line == 6  # the lines read, the last one too
    assert [r.line for r in want] == [1, 3, 5]
    check_spans(data, want, bodies)
    for cut in range(len(data) + 1):
        got, index = run(data, [data[:cut], data[cut:]], max_line_bytes=limit)
        assert (got, index.errors) == (want, want_index.errors), cut
    # a line of exactly the limit fits, \r included
    assert run(fits + b"\r\n", max_line_bytes=limit + 1)[1].errors == []
    assert run(fits + b"\r\n", max_line_bytes=limit)[1].error_count == 1


def test_too_many_values() -> None:
    many = line("many", '{"a": [' + ", ".join(["1"] * 10) + "]}")
    data = line("few") + b"\n" + many + b"\n" + line("after") + b"\n"
    got, index = run(data, max_line_values=12)
    assert errors(index) == [("line_too_large", None, 2)]
    assert "more than 12 JSON values" in index.errors[0].message
    assert [r.line for r in got] == [1, 3]
    assert run(data, max_line_values=30)[1].errors == []


def test_errors_kept_are_bounded_and_all_are_counted() -> None:
    data = b"\n".join([b"[]", line("ok"), b"[]", b"{}", b"x", line("ok")])
    got, index = run(data, max_errors=2)
    assert errors(index) == [("invalid_json_line", None, 1), ("invalid_json_line", None, 3)]
    assert index.error_count == 5  # 4 bad lines and the repeated custom_id
    assert [r.line for r in got] == [2]
    assert index.requests == 1


def test_no_feed_after_finish() -> None:
    index = InputIndex(EP)
    index.feed(line())
    assert len(index.finish()) == 1
    assert index.finish() == []
    with pytest.raises(RuntimeError):
        index.feed(b"\n")


def test_batch_error_as_json() -> None:
    error = BatchError("empty_file", "no request", None, None)
    assert error.as_json() == {
        "code": "empty_file",
        "message": "no request",
        "param": None,
        "line": None,
    }


@pytest.mark.anyio
async def test_index_stream_yields_groups_as_the_file_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fed from an async generator, in pieces of VALIDATION_PIECE_BYTES (256 here), in a
    worker thread: the first group arrives before the stream has ended, and the groups
    together are what a plain feed gives."""
    monkeypatch.setattr(settings, "VALIDATION_PIECE_BYTES", 256)
    data = b"".join(line(f"r{i}", f'{{"n": "{"é" * (i % 7)}"}}') + b"\n" for i in range(40))
    data += line("last")  # no final newline: finish gives it
    sent = 0
    loop_thread = threading.get_ident()
    fed_from: set[int] = set()
    real_feed = InputIndex.feed

    def feed(self: InputIndex, chunk: bytes | memoryview) -> list[RequestLine]:
        fed_from.add(threading.get_ident())
        assert len(chunk) <= 256
        return real_feed(self, chunk)

    monkeypatch.setattr(InputIndex, "feed", feed)

    async def chunks() -> AsyncIterator[bytes | memoryview]:
        nonlocal sent
        for at in range(0, len(data), 1000):  # chunks larger than a piece: cut in pieces
            sent += 1
            yield data[at : at + 1000]

    index = InputIndex(EP)
    groups: list[list[RequestLine]] = []
    sent_at_group: list[int] = []
    async for group in index_stream(index, chunks()):
        assert group
        groups.append(group)
        sent_at_group.append(sent)
    chunk_count = -(-len(data) // 1000)
    assert sent_at_group[0] == 1 < chunk_count
    assert len(groups) > chunk_count  # several per chunk
    assert groups[-1] == [RequestLine(41, "last", groups[-1][0].body_offset, 14, "m")]
    assert loop_thread not in fed_from
    monkeypatch.setattr(InputIndex, "feed", real_feed)
    want, _ = run(data)
    assert [r for group in groups for r in group] == want
    assert index.errors == [] and index.requests == 41


@pytest.mark.anyio
async def test_index_stream_stops_feeding_at_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the index has stopped, the rest of the stream is read but not fed."""
    data = b"".join(line(f"r{i}") + b"\n" for i in range(10))
    fed: list[int] = []
    real_feed = InputIndex.feed

    def feed(self: InputIndex, chunk: bytes | memoryview) -> list[RequestLine]:
        fed.append(len(chunk))
        return real_feed(self, chunk)

    monkeypatch.setattr(InputIndex, "feed", feed)

    async def chunks() -> AsyncIterator[bytes | memoryview]:
        for at in range(0, len(data), 30):
            yield memoryview(data)[at : at + 30]

    index = InputIndex(EP, max_requests=3)
    got = [r async for group in index_stream(index, chunks()) for r in group]
    assert [r.line for r in got] == [1, 2, 3]
    assert [e.code for e in index.errors] == ["too_many_tasks"] and index.stopped
    assert sum(fed) < len(data) // 2  # the 4th line is in the 4th chunk of 30 bytes


def test_the_module_names_its_codes() -> None:
    """Every code the check may answer is named in the module (and so in its docstring)."""
    doc = batch_input.__doc__ or ""
    codes = [
        "invalid_json_line",
        "missing_required_parameter",
        "invalid_url",
        "invalid_request",
        "duplicate_custom_id",
        "too_many_tasks",
        "empty_file",
        "line_too_large",
        "file_too_large",
    ]
    for code in codes:
        assert f"`{code}`" in doc, code

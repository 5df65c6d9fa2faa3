"""Content validation on its own: bytes in any chunking give the same answer, and memory
stays flat however large the file."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator

import pytest

from openai_files.server import _json, settings
from openai_files.server.errors import InvalidRequest
from openai_files.server.purposes import validator_for
from openai_files.server.settings import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS, MAX_LINE_VALUES
from openai_files.server.validation import NOT_A_DICTIONARY, Validator

MiB = 1024 * 1024


def request(i: int, content: str = "hi") -> dict[str, object]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": content}]},
    }


def lines(*objs: object) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)


def outcome(v: Validator | None, chunks: Iterator[bytes] | list[bytes]) -> str:
    """`accepted`, or the refusal's message."""
    assert v is not None
    try:
        for chunk in chunks:
            v.feed(chunk)
        v.finish()
    except InvalidRequest as exc:
        assert exc.param == "file"
        return exc.message
    return "accepted"


# Three requests, the second with a two-byte and a four-byte UTF-8 character, the last line
# without its newline; and the same with a repeated custom_id on line 3 (strict refuses).
GOOD = lines(request(1), request(2, "caf\u00e9 \U0001f600")) + lines(request(3))[:-1]
DUPLICATE = GOOD.replace(b'"req-3"', b'"req-1"')
NOT_OBJECT = lines(request(1), request(2, "\u00e9")) + b"[1, 2]"


@pytest.mark.parametrize(
    ("data", "strict", "expected"),
    [
        (GOOD, False, "accepted"),
        (GOOD, True, "accepted"),
        (DUPLICATE, False, "accepted"),
        (DUPLICATE, True, "Line 3 is not a valid batch request: 'custom_id' 'req-1' is"),
        (NOT_OBJECT, False, "Line 3 is not a dictionary"),
        (NOT_OBJECT, True, "Line 3 is not a dictionary"),
    ],
)
def test_every_split_point_gives_the_same_answer(data: bytes, strict: bool, expected: str) -> None:
    """A line cut across two chunks at every offset (also inside a UTF-8 character), and
    the file fed one byte at a time, are read as the whole file is."""
    whole = outcome(validator_for("batch", strict=strict), [data])
    assert expected in whole
    for cut in range(len(data) + 1):
        assert outcome(validator_for("batch", strict=strict), [data[:cut], data[cut:]]) == whole
    bytewise = [data[i : i + 1] for i in range(len(data))]
    assert outcome(validator_for("batch", strict=strict), bytewise) == whole
    # memoryviews, as a store's read gives them
    views = [memoryview(data)[i : i + 5] for i in range(0, len(data), 5)]
    assert outcome(validator_for("batch", strict=strict), views) == whole  # type: ignore[arg-type]


def test_openai_words_and_hint() -> None:
    message = outcome(validator_for("fine-tune", strict=False), [b'{"a": 1}\n\n"text"\n'])
    assert message == NOT_A_DICTIONARY.format(line=3, hint='""tex..."')
    assert message == (
        "Expected file to have JSONL format, where every line is a JSON dictionary. "
        'Line 3 is not a dictionary (HINT: line starts with: ""tex...").'
    )
    # Not UTF-8: the hint shows the first bytes, as OpenAI's does.
    latin = outcome(validator_for("batch", strict=False), [b"\xb0\xb2\xd7\xb0\xff\n"])
    assert latin.endswith(
        "Line 1 is not a dictionary (HINT: line starts with: \"b'\\xb0\\xb2\\xd7\\xb0'...\")."
    )


def test_blank_lines_are_skipped_but_counted() -> None:
    data = b"\n \t\r\n" + lines({"a": 1}) + b"\r\n\n" + b"7\n"
    assert "Line 6 is not a dictionary" in outcome(validator_for("batch", strict=False), [data])


def test_a_line_longer_than_the_limit_is_refused_without_being_held() -> None:
    v = validator_for("batch", strict=False, max_line_bytes=1000)
    assert v is not None
    v.feed(lines({"a": 1}))
    v.feed(b"{" + b" " * 900)
    with pytest.raises(InvalidRequest, match="Line 2 is longer than 1000 bytes"):
        v.feed(b" " * 200)


@pytest.mark.parametrize("purpose", ["batch", "fine-tune"])
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"a": NaN}', id="nan"),
        pytest.param(b'{"a": Infinity}', id="infinity"),
        pytest.param(b'{"a": [1, -Infinity]}', id="minus-infinity"),
        pytest.param(b'{"messages": [], "x": {"y": NaN}}', id="nested"),
    ],
)
def test_nan_and_infinity_are_not_json(purpose: str, strict: bool, line: bytes) -> None:
    message = outcome(validator_for(purpose, strict=strict), [line + b"\n"])
    assert message == NOT_A_DICTIONARY.format(line=1, hint=f'"{line[:4].decode()}..."')


def values_line(count: int) -> bytes:
    """A line of `count` JSON values and keys: an object, its key, and an array."""
    return b'{"a": [' + b",".join([b"0"] * (count - 3)) + b"]}\n"


def test_a_line_of_more_than_a_million_values_is_refused_unparsed() -> None:
    assert outcome(validator_for("batch", strict=False), [values_line(MAX_LINE_VALUES)]) == (
        "accepted"
    )
    message = outcome(validator_for("batch", strict=False), [values_line(MAX_LINE_VALUES + 1)])
    assert message == (
        "Line 1 holds more than 1000000 JSON values (keys count too), the most this server "
        "reads in one line; split the example or request."
    )
    # Marks inside strings are not values; nor are escaped quotes the ends of strings.
    commas = b'{"a": "' + b'\\",' * MAX_LINE_VALUES + b'", "b": [[], {}]}\n'
    assert outcome(validator_for("batch", strict=False), [commas]) == "accepted"
    # A line that is not an object is refused as such, however many values it holds.
    array = b"[" + b"{}," * MAX_LINE_VALUES + b"{}]\n"
    assert "Line 1 is not a dictionary" in outcome(validator_for("batch", strict=False), [array])


def reference_count(text: bytes) -> int:
    """Values and keys of a JSON text, by a plain walk byte by byte."""
    count, inside, escaped = 1, False, False
    for byte in text:
        if escaped:
            escaped = False
        elif inside:
            escaped, inside = byte == ord("\\"), byte != ord('"')
        elif byte == ord('"'):
            inside = True
        else:
            count += byte in b"[{,:"
    return count


def test_values_are_counted_across_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strings, escapes and marks cut by the windows that the count goes by (7 bytes here)
    are counted as a byte-by-byte walk counts them, for every limit around the count."""
    monkeypatch.setattr(settings, "VALIDATION_WINDOW_BYTES", 7)
    pieces = ['x\\"y', "", ",:[{", "\\", "\\\\", 1, {}, [], {"k": ",\\"}, ["a", "b"]]
    for i in range(400):
        value = {"a": [pieces[(i * j) % len(pieces)] for j in range(i % 9)], "n": i}
        text = json.dumps(value).encode()
        count = reference_count(text)
        for limit in (0, 1, count - 1, count, count + 1):
            expected = count > limit and len(text) > limit
            assert _json.more_values_than(text, limit) is expected, (text, limit)


def test_nothing_to_check_for_other_purposes() -> None:
    for purpose in ("assistants", "user_data", "evals", "vision"):
        assert validator_for(purpose, strict=False) is None
    for purpose in ("assistants", "user_data", "evals"):
        assert validator_for(purpose, strict=True) is None


def test_strict_batch_refuses_request_50001() -> None:
    data = b"".join(
        b'{"custom_id":"%d","method":"POST","url":"/v1/embeddings","body":{}}\n' % i
        for i in range(BATCH_MAX_REQUESTS + 1)
    )
    message = outcome(validator_for("batch", strict=True), [data])
    assert message.startswith(f"Line {BATCH_MAX_REQUESTS + 1} is request {BATCH_MAX_REQUESTS + 1}")
    assert outcome(validator_for("batch", strict=False), [data]) == "accepted"


def test_strict_batch_refuses_a_byte_past_200_mb() -> None:
    blank = b" " * (MiB - 1) + b"\n"  # one blank line per MiB: cheap to read
    v = validator_for("batch", strict=True)
    assert v is not None
    for _ in range(BATCH_MAX_BYTES // MiB):
        v.feed(blank)
    with pytest.raises(InvalidRequest, match="larger than 209715200 bytes"):
        v.feed(b"\n")


def big_batch(total: int, chunk_bytes: int = MiB) -> Iterator[bytes]:
    """A batch file of `total` bytes at most, in 50,000 requests, made as it is read."""
    pad = "x" * (total // BATCH_MAX_REQUESTS - 150)
    buf = bytearray()
    for i in range(BATCH_MAX_REQUESTS):
        buf += lines(request(i, pad))
        while len(buf) >= chunk_bytes:
            yield bytes(buf[:chunk_bytes])
            del buf[:chunk_bytes]
    yield bytes(buf)


def test_a_200_mb_batch_file_is_checked_with_flat_memory() -> None:
    """50,000 requests, 200 MB, strict: the validator's own allocations peak at a few
    lines and the custom_id digests (about 7 MB), never the file."""
    v = validator_for("batch", strict=True)
    assert v is not None
    fed = 0
    tracemalloc.start()
    try:
        for chunk in big_batch(BATCH_MAX_BYTES):
            v.feed(chunk)
            fed += len(chunk)
        v.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fed > 190 * MiB
    assert peak < 16 * MiB, peak


def gif(frames: int) -> bytes:
    out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    for _ in range(frames):
        out += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"
        out += b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
    return out + b"\x3b"


def test_gif_frames_counted_across_any_chunking() -> None:
    still, animated = gif(1), gif(3)
    second = animated.index(b"\x2c", animated.index(b"\x2c") + 1)
    for cut in range(len(animated) + 1):
        assert outcome(validator_for("vision", strict=True), [still[:cut], still[cut:]]) == (
            "accepted"
        )
        message = outcome(validator_for("vision", strict=True), [animated[:cut], animated[cut:]])
        assert f"animated GIF (a second image) (byte offset {second})" in message

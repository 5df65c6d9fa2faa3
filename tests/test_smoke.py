from pathlib import Path

import openai


def test_sdk_roundtrip(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    f = client.files.create(file=path, purpose="batch")
    assert f.bytes == 9 and f.filename == "data.jsonl"
    assert [x.id for x in client.files.list()] == [f.id]
    assert client.files.content(f.id).content == b'{"a": 1}\n'
    assert client.files.delete(f.id).deleted

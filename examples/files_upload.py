"""Upload a file (the seed's "File Upload" example).

    python examples/files_upload.py [PATH]

Uploads PATH for `assistants`, under its own name and with a type guessed from it. Without
an argument it writes a small one-page PDF, `example.pdf`, into a temporary folder and
uploads that: nothing is fetched from the internet.
"""

import mimetypes
import sys
import tempfile
from pathlib import Path

from openai_files import assert_response_http_ok, files_upload


def small_pdf() -> bytes:
    """A valid one-page PDF that says "Hello from openai-files"."""
    text = b"BT /F1 24 Tf 72 720 Td (Hello from openai-files) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


if len(sys.argv) > 2:
    sys.exit(f"usage: python {sys.argv[0]} [PATH]")
with tempfile.TemporaryDirectory() as folder:
    if len(sys.argv) == 2:
        path = Path(sys.argv[1])
    else:
        path = Path(folder) / "example.pdf"
        path.write_bytes(small_pdf())
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = files_upload(path, path.name, mimetype, "assistants")
assert_response_http_ok(response)
print(response.data)

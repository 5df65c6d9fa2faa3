"""Upload a file (the seed's "File Upload" example).

    python examples/files_upload.py [PATH_OR_URL]

Without an argument it fetches the seed's example PDF; give a path to upload a local file.
"""

import sys
from pathlib import Path

import httpx

from openai_files import assert_response_http_ok, files_upload

SEED_PDF = "https://raw.githubusercontent.com/jlangch/venice/master/doc/pdfs/fonts-example.pdf"

source = sys.argv[1] if len(sys.argv) > 1 else SEED_PDF
if source.startswith(("http://", "https://")):
    data = httpx.get(source, follow_redirects=True).raise_for_status().content
    response = files_upload(data, "example.pdf", "application/pdf", "assistants")
else:
    response = files_upload(Path(source), "example.pdf", "application/pdf", "assistants")
assert_response_http_ok(response)
print(response.data)

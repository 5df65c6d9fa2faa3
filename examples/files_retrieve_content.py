"""Save a file's content to ./example.pdf (the seed's "File Retrieve Content" example).

    python examples/files_retrieve_content.py FILE_ID

Files of purpose "assistants" (and "user_data") cannot be downloaded: that fails with the
seed's "HTTP response is not HTTP_OK!" message, status 400.
"""

import sys
from pathlib import Path

from openai_files import assert_response_http_ok, files_retrieve_content

file_id = sys.argv[1] if len(sys.argv) > 1 else "file-uo1oroO3MMRFwRAypupJX0pO"
response = files_retrieve_content(file_id)
assert_response_http_ok(response)
file = Path("./example.pdf")
file.write_bytes(response.data)
print("Saved to:", file)

"""Delete a file (the seed's "File Delete" example).

python examples/files_delete.py FILE_ID
"""

import sys

from openai_files import assert_response_http_ok, files_delete

file_id = sys.argv[1] if len(sys.argv) > 1 else "file-uo1oroO3MMRFwRAypupJX0pO"
response = files_delete(file_id)
assert_response_http_ok(response)
print(response.data)

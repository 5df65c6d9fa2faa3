"""List files (the seed's "File List" examples 1 and 2).

python examples/files_list.py              # every file
python examples/files_list.py assistants   # only those of a purpose
"""

import sys

from openai_files import assert_response_http_ok, files_list

purpose = sys.argv[1] if len(sys.argv) > 1 else None
response = files_list(purpose)
assert_response_http_ok(response)
print(response.data)

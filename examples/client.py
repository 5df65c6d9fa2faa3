"""The same round trip with `Client`: typed objects, typed errors, streamed transfers.

python examples/client.py PATH
"""

import sys
from pathlib import Path

from openai_files import Client, NotFoundError

path = Path(sys.argv[1])
with Client() as client:  # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
    f = client.upload(path, purpose="vision")  # streamed from disk, never read whole
    print("uploaded", f.id, f.filename, f.bytes)
    for item in client.iter_files(purpose="vision"):  # every page, following `after`
        print("listed", item.id, item.filename)
    size = client.download(f.id, path.with_name("copy-" + path.name))
    print("downloaded", size, "bytes")
    client.delete(f.id)
    try:
        client.retrieve(f.id)
    except NotFoundError as exc:
        print("gone:", exc.status_code, exc.param)

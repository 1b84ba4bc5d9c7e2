"""A SQLite connection in its own process, driven by JSON lines on stdin (one reply line each).

Request: {"sql": "...", "params": [...], "script": false}; reply: {"rows": [...]} or
{"error": "...", "type": "OperationalError"}. Used by the mount tests so that SQLite runs in a process
separate from both the test runner and the litefs node, as an application would.
"""

import json
import sqlite3
import sys


def main() -> None:
    path = sys.argv[1]
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req.get("script"):
                conn.executescript(req["sql"])
                rows = []
            else:
                rows = [list(r) for r in conn.execute(req["sql"], req.get("params", []))]
            out = {"rows": rows}
        except Exception as exc:  # reported to the test, which decides
            out = {"error": str(exc), "type": type(exc).__name__}
        sys.stdout.write(json.dumps(out, default=repr) + "\n")
        sys.stdout.flush()
    conn.close()


if __name__ == "__main__":
    main()

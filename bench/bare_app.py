"""The bare-FastAPI ceiling: one route returning constant JSON, nothing else (no middleware,
no dependencies, no database). Served by ``run_custody.py`` with the same uvicorn defaults and
worker count as ``childlink serve``:

    uvicorn --app-dir bench bare_app:app --workers 2 --no-access-log --log-level warning
"""

from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok", "service": "bare-fastapi"}

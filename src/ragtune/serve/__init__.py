"""Serve ragtune over HTTP: an OpenAI-compatible API, knowledge-base routes and a web page.

    from ragtune.serve import create_app
    app = create_app(kb, base=generator)      # then: uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from ragtune.serve.app import create_app

__all__ = ["create_app"]

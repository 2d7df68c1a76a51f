"""A Flask app served by cymongoose's command line (WSGI).

    python -m cymongoose wsgi flask_app:app --listen http://127.0.0.1:8000 --workers 2

Try ``curl http://127.0.0.1:8000/``, ``curl -d hello http://127.0.0.1:8000/echo`` and
``curl http://127.0.0.1:8000/stream``.
"""

import os

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(hello="world", pid=os.getpid())


@app.post("/echo")
def echo():
    resp = Response(request.get_data(), mimetype="application/octet-stream")
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")  # two Set-Cookie headers stay two
    return resp


@app.get("/stream")
def stream():
    def lines():
        for i in range(5):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("an application error: the client gets a 500, the server goes on")

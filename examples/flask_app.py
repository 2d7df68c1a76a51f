"""A Flask app served by cymongoose's command line (WSGI).

    python -m cymongoose wsgi flask_app:app --listen http://127.0.0.1:8000 --workers 2

Try ``curl http://127.0.0.1:8000/``, ``curl -d hello http://127.0.0.1:8000/echo`` and
``curl http://127.0.0.1:8000/stream``; ``curl -N http://127.0.0.1:8000/ticks`` streams
server-sent events until you stop it; ``/old`` redirects, ``/boom`` is a 500.
"""

import itertools
import os
import time

from flask import Flask, Response, jsonify, redirect, request, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(hello="world", pid=os.getpid())


@app.post("/echo")
def echo():
    data = request.get_data()
    resp = Response(data, mimetype="application/octet-stream")
    resp.headers["X-Echo-Length"] = str(len(data))
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")  # two Set-Cookie headers stay two
    return resp


@app.get("/stream")
def stream():
    def lines():
        for i in range(5):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")


@app.get("/ticks")
def ticks():
    def events():  # endless: each tick is sent as it is made, until the client goes
        for n in itertools.count():
            yield f"data: tick {n}\n\n"
            time.sleep(0.2)

    return Response(events(), mimetype="text/event-stream")


@app.get("/old")
def old():
    return redirect(url_for("index"))


@app.get("/boom")
def boom():
    raise RuntimeError("an application error: the client gets a 500, the server goes on")

"""Hello-world WSGI app: the same app under `python -m cymongoose wsgi` and under gunicorn
gthread (bench/adapters.py)."""

BODY = b'{"hello":"world"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", "17")]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]

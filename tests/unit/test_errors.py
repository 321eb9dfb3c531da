from app.errors import APIError, ModelNotFound, _first_error


def test_error_envelope_has_openai_keys():
    body = ModelNotFound("x").to_dict()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"


def test_nested_messages_name_the_path():
    assert _first_error({"messages": {0: {"role": ["bad"]}}}) == ("messages[0].role", "bad")
    assert _first_error({"_schema": ["whole"]}) == ("", "whole")


def test_round_trip_from_stored_error():
    err = APIError.from_dict({"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}, 400)
    assert (err.status, err.message, err.param, err.code, err.type) == (400, "m", "p", "c", "t")


def test_redis_away_or_full_is_a_503_with_retry_after_never_a_500():
    import redis
    from flask import Flask

    from app.errors import register_error_handlers

    app = Flask(__name__)
    register_error_handlers(app)
    failures = {
        "/away": redis.ConnectionError("Connection refused"),
        "/slow": redis.TimeoutError("Timeout reading from socket"),
        "/full": redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        "/bug": redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    }
    for path, failure in failures.items():
        app.add_url_rule(path, path, lambda failure=failure: (_ for _ in ()).throw(failure))
    client = app.test_client()
    for path, code in (("/away", "store_unavailable"), ("/slow", "store_unavailable"), ("/full", "server_busy")):
        response = client.get(path)
        assert response.status_code == 503 and response.headers["Retry-After"], path
        assert response.get_json()["error"]["code"] == code
        assert "Connection refused" not in response.get_data(as_text=True), "no internals leak"
    assert client.get("/bug").status_code == 500, "a real bug is still a 500"

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

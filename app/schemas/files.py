"""The Files API's objects and queries, as OpenAI names them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from tasks.files import OUTPUT_PURPOSE, UPLOAD_PURPOSES


class FileSchema(Schema):
    id = fields.String()
    object = fields.Constant("file")
    bytes = fields.Integer()
    created_at = fields.Integer()
    expires_at = fields.Integer(allow_none=True)
    filename = fields.String()
    purpose = fields.String(validate=validate.OneOf((*UPLOAD_PURPOSES, OUTPUT_PURPOSE)))
    status = fields.String()
    status_details = fields.String(allow_none=True)


class FileListSchema(Schema):
    object = fields.Constant("list")
    data = fields.List(fields.Nested(FileSchema))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class FileDeletedSchema(Schema):
    id = fields.String()
    object = fields.Constant("file")
    deleted = fields.Boolean()


class FileListQuerySchema(Schema):
    purpose = fields.String(load_default=None)
    limit = fields.Integer(validate=validate.Range(min=1, max=10000), load_default=10000)
    after = fields.String(load_default=None)
    order = fields.String(validate=validate.OneOf(("asc", "desc")), load_default="desc")


#: The upload body, documented by hand: it is parsed as a stream (app.api.files), not by a schema.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
                },
            }
        }
    },
}

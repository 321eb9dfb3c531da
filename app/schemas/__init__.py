"""marshmallow schemas, one module per OpenAI resource, using OpenAI's wire names."""

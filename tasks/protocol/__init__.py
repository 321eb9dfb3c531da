"""The one vocabulary the API and the worker share.

A validated body becomes a typed request here (`requests`), the job record
stores that request, the worker hands its `Sampling` to the engine, and the
engine's outputs become OpenAI bodies and stream chunks (`bodies`). Every
failure a client can see is an `APIError` (`errors`), rendered one way.
"""

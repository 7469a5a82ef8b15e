"""The REST API: an API Gateway proxy handler (app.py) over the job pipeline (service.py), with API
keys, per-key limits, uploads and idempotent submissions, documented by a generated OpenAPI 3.1."""

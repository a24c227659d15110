"""The OCI Distribution HTTP API. It knows nothing of users: it asks an authorizer."""

"""The REST API, one router module per resource; service.api.app assembles them."""

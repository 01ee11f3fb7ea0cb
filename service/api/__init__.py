"""The REST API, one router module per resource; service.app assembles them."""

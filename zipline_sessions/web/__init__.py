"""The web layer: the Flask app class, one error shape for every status, the OpenAPI document; for all three uses."""

"""GET /api/openapi.json: a valid OpenAPI 3 document that covers every route the app serves
(but the sign-in pages under /auth/, which answer HTML to people, not JSON to programs)."""

import re

from openapi_spec_validator import validate

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_the_document_is_valid_openapi(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    validate(response.json)
    assert response.json["openapi"].startswith("3.")


def test_every_route_and_method_is_documented(app, client):
    paths = client.get("/api/openapi.json").json["paths"]
    served = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              and not rule.endpoint.startswith("pages.") for method in rule.methods - IGNORED_METHODS}
    documented = {(path, method) for path, operations in paths.items() for method in operations}
    assert served == documented


def test_every_operation_documents_its_errors_in_the_contract_shape(client):
    document = client.get("/api/openapi.json").json
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "message", "statusCode"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/api/openapi.json":
                continue
            errors = {status for status in operation["responses"] if status >= "400"}
            assert "500" in errors, (path, method)
            for status in errors:
                ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error"


def test_both_auth_schemes_are_described(client):
    document = client.get("/api/openapi.json").json
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiToken"] == {"type": "apiKey", "in": "header", "name": "Authorization",
                                   "description": "An API token, bare or after 'Bearer '."}
    assert schemes["sessionCookie"] == {"type": "apiKey", "in": "cookie", "name": "zipline_token"}
    delete = document["paths"]["/api/user/sessions"]["delete"]
    assert {"apiToken": [], "sessionCookie": []} in delete["security"]
    assert set(delete["responses"]) >= {"200", "400", "401", "413", "415", "500"}

"""The app class (framework.SessionsApp): werkzeug's binding of a request to its host is reused
across requests of the same host, yet each request still sees its own host, path, method, query
and route arguments; a refused host, a wrong method or an unknown path is refused every time;
the bindings kept stay bounded."""

import pytest
from flask import request

from zipline_sessions.web.framework import BOUND_HOSTS


@pytest.fixture
def app(make_app):
    app = make_app()

    @app.get("/__mutated__/<name>")
    def mutated(name):
        """A view that changes the route arguments it was given."""
        request.view_args["name"] = "changed"
        return {"name": name}

    @app.get("/__seen__/<name>")
    def seen(name):
        """What routing and the request saw."""
        return {"host": request.host, "path": request.path, "name": name, "method": request.method,
                "query": request.args.to_dict(), "url": request.url}

    return app


@pytest.fixture
def client(app):
    return app.test_client(use_cookies=False)


def test_each_request_sees_its_own_host_path_and_query_when_hosts_alternate(client):
    answers = [client.get(f"/__seen__/{name}?n={name}", headers={"Host": host}, base_url=f"{scheme}://{host}")
               for name, host, scheme in [("one", "a.example", "http"), ("two", "b.example:8080", "http"),
                                          ("three", "a.example", "http"), ("four", "a.example", "https"),
                                          ("five", "b.example:8080", "http")]]
    assert [answer.json for answer in answers] == [
        {"host": host, "path": f"/__seen__/{name}", "name": name, "method": "GET", "query": {"n": name},
         "url": f"{scheme}://{host}/__seen__/{name}?n={name}"}
        for name, host, scheme in [("one", "a.example", "http"), ("two", "b.example:8080", "http"),
                                   ("three", "a.example", "http"), ("four", "a.example", "https"),
                                   ("five", "b.example:8080", "http")]]


def test_a_reused_binding_still_routes_by_path_and_method(client):
    assert client.get("/__seen__/x").status_code == 200
    assert client.post("/__seen__/x").status_code == 405
    assert client.get("/api/nowhere").status_code == 404
    assert client.get("/api/health").status_code == 200
    assert client.head("/api/auth/logout").status_code == 405  # the Rule that refuses HEAD


def test_a_host_werkzeug_refuses_is_refused_every_time(client):
    bad = {"Host": "a" * 64 + ".example"}  # a DNS label over 63 characters: no IDNA form
    assert [client.get("/api/health", headers=bad).status_code for _ in range(2)] == [400, 400]
    assert client.get("/api/health").status_code == 200


def test_the_bindings_kept_stay_bounded_whatever_hosts_clients_send(app, client):
    for number in range(BOUND_HOSTS * 3):
        host = f"host{number}.example"
        assert client.get("/__seen__/x", headers={"Host": host}).json["host"] == host
    assert 0 < len(app._bindings) <= BOUND_HOSTS


def test_a_reused_binding_gives_each_request_its_own_route_arguments(client):
    assert [client.get("/__mutated__/same").json["name"] for _ in range(3)] == ["same"] * 3
    assert [client.get(path).status_code for path in ["/__seen__/x", "/__seen__/x/", "/__seen__/x"]] == [
        200, 404, 200]

"""The requests.Session the fixtures hand out. Its own module, imported on first use: the xdist
controller, which only launches services, never imports requests."""

from urllib.parse import urljoin

import requests


class ServiceSession(requests.Session):
    """A requests.Session whose relative URLs ("/api/user/sessions") go to the service."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, urljoin(self.base_url, url), *args, **kwargs)

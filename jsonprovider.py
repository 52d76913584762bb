"""JSON bodies through orjson: keys in the order given, UTF-8 as is, compact.

The same bytes Zipline's own server sends (JSON.stringify), and several times faster than
the standard library encoder.
"""

import orjson
from flask.json.provider import JSONProvider


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj) + b"\n", mimetype=self.mimetype)

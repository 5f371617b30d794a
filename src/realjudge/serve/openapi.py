"""OpenAPI descriptions of the bodies the service parses itself (in memory, with limits), so that
/openapi.json and /docs document them although FastAPI never sees them as parameters."""

_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "additionalProperties": False,  # the server refuses any other field (400)
            "properties": {
                "file": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                         "description": "An image (repeat the field for several)."},
                "model": {"type": "string", "description": "Overrides the `model` query parameter."},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "Overrides the `threshold` query parameter."},
                "verdict": {"type": "string", "enum": ["pixels", "combined"],
                            "description": "Overrides the `verdict` query parameter."},
            },
        }},
        "application/json": {"schema": {
            "type": "object",
            "required": ["images"],
            "additionalProperties": False,
            "properties": {
                "images": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["data"], "additionalProperties": False,
                    "properties": {"name": {"type": "string"},
                                   "data": {"type": "string", "format": "byte",
                                            "description": "Base64 of the file's bytes (a data: URL works too)."}}}},
                "model": {"type": "string"},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "verdict": {"type": "string", "enum": ["pixels", "combined"]},
            },
        }},
    },
}

_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}

_RECORD = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "The upload's file name, or the JSON item's name."},
        "p_fake": {"type": "number", "nullable": True, "description": "Calibrated probability that the image is generated."},
        "verdict": {"type": "string", "enum": ["fake", "real", "uncertain"], "nullable": True},
        "threshold": {"type": "number", "nullable": True},
        "model": {"type": "string", "nullable": True},
        "error": {"type": "string", "nullable": True, "description": "Why the image could not be scored."},
        "logit": {"type": "number", "nullable": True},
        "preprocess": {"type": "string", "nullable": True, "description": "What was done to the pixels (resize, crops)."},
        "facts": {"type": "object", "description": "Format, size, mode, JPEG quality estimate."},
        "provenance": {"type": "array", "nullable": True, "description": "What the file says about its origin "
                       "(docs/PROVENANCE.md); never mixed into p_fake.", "items": {"type": "object", "properties": {
                           "signal": {"type": "string"}, "says": {"type": "string", "enum": ["ai", "ai_edited", "camera", "unknown"]},
                           "strength": {"type": "string", "enum": ["signed", "signed_untrusted", "claim", "hint"]},
                           "detail": {"type": "object"}}}},
        "provenance_verdict": {"type": "string", "enum": ["ai", "camera", "none", "conflict"], "nullable": True},
        "verdict_source": {"type": "string", "enum": ["pixels", "provenance"],
                           "description": "`provenance` only with verdict=combined, when the evidence overrode the pixels."},
        "pixel_verdict": {"type": "string", "nullable": True, "description": "The detector's verdict, when overridden."},
        "timings": {"type": "object", "properties": {"decode_ms": {"type": "number"},
                                                     "provenance_ms": {"type": "number", "nullable": True},
                                                     "model_ms": {"type": "number", "nullable": True}}},
    },
}

_TIMINGS = {"type": "object", "properties": {"wait_ms": {"type": "number", "description": "Waiting for a worker."},
                                             "total_ms": {"type": "number"}}}

_COMMON_ERRORS = {
    "400": {"description": "Bad request (malformed body, unknown field or model, bad threshold)", **_ERROR},
    "408": {"description": "The upload did not finish in time", **_ERROR},
    "413": {"description": "Upload too large, or too many images", **_ERROR},
    "415": {"description": "Neither multipart/form-data nor application/json", **_ERROR},
    "503": {"description": "Busy: every place in the queue is taken (see Retry-After)", **_ERROR},
}

DETECT = {"requestBody": _IMAGE_BODY}
DETECT_RESPONSES = {
    200: {"description": "One record per image, in order", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"results": {"type": "array", "items": _RECORD}, "timings": _TIMINGS}}}}},
    422: {"description": "No image could be scored; `results` says why for each", **_ERROR},
    **_COMMON_ERRORS,
}

EXPLAIN = {"requestBody": _IMAGE_BODY}
EXPLAIN_RESPONSES = {
    200: {"description": "The heat-map overlay (PNG; verdict in X-Realjudge-* headers), or JSON with `format=json`",
          "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {"type": "object", "properties": {
                          "record": _RECORD, "method": {"type": "string"},
                          "target": {"type": "string", "enum": ["fake", "real"],
                                     "description": "The class whose evidence the heat map shows."},
                          "width": {"type": "integer"},
                          "height": {"type": "integer"}, "overlay_png": {"type": "string", "format": "byte"},
                          "explained": {"type": "string", "description": "Which part of the image the map covers."},
                          "coverage": {"type": "number", "description": "Share of the image the explained crops cover."},
                          "crops": {"type": "array", "items": {"type": "object", "properties": {
                              "x": {"type": "integer"}, "y": {"type": "integer"}, "size": {"type": "integer"},
                              "p_fake": {"type": "number"}}}},
                          "notes": {"type": "array", "items": {"type": "string"}},
                          "timings": _TIMINGS}}}}},
    422: {"description": "The image could not be read", **_ERROR},
    501: {"description": "Explanations are not installed", **_ERROR},
    **_COMMON_ERRORS,
}

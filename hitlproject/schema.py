"""The API schema documents its refusals too, so that an agent (or schemathesis) knows every
answer it can get: the errors each operation may give, with the shape of their body. And it
describes operations and bodies in words written for agents' developers, never in the words
a base class's docstring has for the code's readers."""

from typing import TypeVar

from drf_spectacular.plumbing import get_lib_doc_excludes

Class = TypeVar("Class", bound=type)

_FOR_CODE_READERS: list[type] = []


def docstring_for_code_readers(cls: Class) -> Class:
    """Marks a base class whose docstring is for the code's readers. drf-spectacular describes
    an operation, or a body, by its class's docstring or, lacking one, its nearest base's: a
    list of proposals was described as "A POST view whose answer is kept under the agent's
    Idempotency-Key …", a proposal's body as "A serializer that refuses fields it does not
    know". A subclass's own docstring still describes it."""
    _FOR_CODE_READERS.append(cls)
    return cls


def doc_excludes() -> list[type]:
    """``GET_LIB_DOC_EXCLUDES``: the classes whose docstrings describe nothing in the schema,
    nor do those of the classes they derive from."""
    return [*get_lib_doc_excludes(), *_FOR_CODE_READERS]


ERROR = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What was wrong, in words."},
        "code": {"type": "string", "description": "A stable name for the error."},
    },
    "required": ["detail"],
}
INVALID = {
    "type": "object",
    "description": "The messages per field (a list of strings, or nested for nested fields), "
    "or `detail` and `code` when the request as a whole was refused.",
    "additionalProperties": True,
}
REFUSALS = {
    "400": ("The request is not valid: see the messages per field.", "InvalidRequest"),
    "401": ("No API key, or one that is malformed, unknown or revoked.", "Error"),
    "403": ("The agent may not do this.", "Error"),
    "404": ("No such resource for this agent (another agent's is as good as absent).", "Error"),
    "409": ("The state does not allow it now, or the same request is in flight.", "Error"),
    "413": ("The body is too large.", "Error"),
    "415": (
        "The body is not JSON in UTF-8 (another charset said, or a Content-Encoding).",
        "Error",
    ),
    "422": ("The Idempotency-Key was used with another request.", "Error"),
    "429": (
        "Too many requests from this agent: wait as Retry-After says. Code "
        "authentication_throttled: too many malformed, unknown or revoked API keys from this "
        "address (HITL_API_AUTH_FAILURE_RATE); a valid key from it is still answered.",
        "Error",
    ),
    "503": (
        "Nothing was done; send the same request again after Retry-After seconds. Code busy: "
        "the server has as many requests under way as it takes at once (in all, "
        "HITL_API_MAX_IN_FLIGHT, or from this API key, HITL_API_MAX_IN_FLIGHT_PER_AGENT, per "
        "web process), or no database connection or lock came free in time. Code unavailable: "
        "the rate-limit store cannot be reached.",
        "Error",
    ),
}
READ_ONLY = ("400", "401", "403", "404", "429", "503")


def document_refusals(result, generator, request, public):
    """A drf-spectacular postprocessing hook: the refusals of every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("InvalidRequest", INVALID)
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            statuses = READ_ONLY if method == "get" else REFUSALS
            responses = operation.setdefault("responses", {})
            for status in statuses:
                description, component = REFUSALS[status]
                # An operation may say more of a refusal (its own description); its body is
                # the same shape.
                response = responses.setdefault(status, {"description": description})
                response.setdefault(
                    "content",
                    {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
                )
    return result

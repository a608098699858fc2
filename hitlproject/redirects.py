"""Django's common middleware, with a missing trailing slash redirected so that a write stays
the write it was.

Django answers ``POST /api/v1/proposals`` (no trailing slash) with a 301 to
``/api/v1/proposals/``. Clients (requests, browsers, httpx when told to follow) repeat a 301
as a GET: an agent's submission came back ``200`` with the list of its proposals, nothing
proposed, and a withdrawal came back ``405``, neither saying the request was never read. A
308 asks the client to send the same method and body to the new address, so the request
lands where it was meant (as RFC 9110 has it for a permanent redirect that keeps the method).
A read keeps Django's 301.
"""

from django.http import HttpResponsePermanentRedirect
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.utils.http import escape_leading_slashes

READS = frozenset({"GET", "HEAD"})


class HttpResponsePermanentRedirectKeepingMethod(HttpResponsePermanentRedirect):
    status_code = 308


class CommonMiddleware(DjangoCommonMiddleware):
    def process_response(self, request, response):
        if (
            request.method not in READS
            and response.status_code == 404
            and self.should_redirect_with_slash(request)
        ):
            # Django's own path (get_full_path_with_slash) refuses a write under DEBUG, since
            # a 301 loses its body; a 308 keeps it.
            path = escape_leading_slashes(request.get_full_path(force_append_slash=True))
            return HttpResponsePermanentRedirectKeepingMethod(path)
        return super().process_response(request, response)

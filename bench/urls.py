import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bench.baseline.models import BaselineRow
from bench.baseline.views import TrackedRowCreate
from hitlproject.urls import urlpatterns as platform_urlpatterns


@csrf_exempt
def insert_one_row(request: HttpRequest) -> JsonResponse:
    """The baseline: parse the JSON body and insert one row. No auth, no validation."""
    row = BaselineRow.objects.create(body=json.loads(request.body))
    return JsonResponse({"id": row.pk}, status=201)


urlpatterns = [
    path("bench/insert/", insert_one_row),
    path("bench/drf/", TrackedRowCreate.as_view()),
    *platform_urlpatterns,
]

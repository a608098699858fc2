"""The plain DRF baseline: what a create endpoint costs when written the ordinary way."""

from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny

from bench.baseline.models import TrackedRow


class TrackedRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackedRow
        fields = [
            "id",
            "action_type",
            "account",
            "payload",
            "rationale",
            "supporting_data",
            "confidence",
            "external_ref",
            "status",
            "created_at",
        ]
        read_only_fields = ["id", "status", "created_at"]


class TrackedRowCreate(generics.CreateAPIView):
    """A DRF generic create view and model serializer: validate, insert the row and its
    history record, answer the row. No authentication or throttle (the bare insert has none
    either): the baseline is what any DRF endpoint pays before the platform's own work."""

    serializer_class = TrackedRowSerializer
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()

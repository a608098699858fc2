from django.db.models import QuerySet

from feedback.models import Feedback


def feedback_list_for_agent(*, agent) -> QuerySet[Feedback]:
    """Feedback on an agent's own proposals."""
    return Feedback.objects.filter(agent=agent).select_related("proposal", "outcome")

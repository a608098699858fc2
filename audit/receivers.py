from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record

from audit.actors import current_actor


@receiver(pre_create_historical_record)
def stamp_actor_on_history(sender, instance, history_instance, **kwargs) -> None:
    actor = current_actor()
    if actor is not None:
        for field, value in actor.history_stamp().items():
            setattr(history_instance, field, value)
    elif history_instance.history_user is not None:
        # A change made through an admin form: simple-history's middleware found the user.
        history_instance.history_actor_kind = "user"
        history_instance.history_actor = history_instance.history_user.get_username()

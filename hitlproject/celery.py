import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitlproject.settings")

app = Celery("hitlproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

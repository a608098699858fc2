from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0011_feedback_kind_withdrawn'),
    ]

    operations = [
        migrations.AlterField(
            model_name='callbackevent',
            name='url',
            field=models.URLField(help_text="Where it is sent: the agent's callback URL at its latest attempt (when the event happened, until one is made)."),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0010_feedback_reason_code_names'),
    ]

    operations = [
        migrations.AlterField(
            model_name='feedback',
            name='kind',
            field=models.CharField(choices=[('approved', 'Approved as is'), ('approved_with_edits', 'Approved with edits'), ('rejected', 'Rejected'), ('expired', 'Expired unreviewed'), ('superseded', 'Superseded: its target changed first'), ('withdrawn', 'Withdrawn by a reviewer'), ('failed', 'Execution failed'), ('outcome', 'Outcome reported')], max_length=24),
        ),
        migrations.AlterField(
            model_name='historicalfeedback',
            name='kind',
            field=models.CharField(choices=[('approved', 'Approved as is'), ('approved_with_edits', 'Approved with edits'), ('rejected', 'Rejected'), ('expired', 'Expired unreviewed'), ('superseded', 'Superseded: its target changed first'), ('withdrawn', 'Withdrawn by a reviewer'), ('failed', 'Execution failed'), ('outcome', 'Outcome reported')], max_length=24),
        ),
    ]

from django.apps import AppConfig


class ExecutorsConfig(AppConfig):
    name = "executors"
    verbose_name = "Executors"

    def ready(self) -> None:
        from approvals.services.recovery import on_stall_sweep
        from executors.recovery import executions_requeue_stalled

        # The stall sweep (approvals') sends executions again through this app, which knows
        # the channel executors' leases: approvals never imports it.
        on_stall_sweep(executions_requeue_stalled)

        from executors.registry import channel_refusals
        from policies.services import channel_refusals_register

        # What a channel refuses outright is a guardrail (policies', which never imports this
        # app): blocked when submitted, refused when approved or carried out.
        channel_refusals_register(channel_refusals)

        from approvals.selectors import last_round_reader_register
        from executors.runner import last_round_of

        # A proposal's last round on a channel, as the console tells it beside its Retry
        # button (approvals', which never imports this app).
        last_round_reader_register(last_round_of)

        from approvals.selectors import attempt_keys_reader_register
        from executors.runner import attempt_keys_of

        # The key each attempt went to its channel with, shown on the console beside the
        # attempt (approvals', which never imports this app).
        attempt_keys_reader_register(attempt_keys_of)

        from approvals.selectors import executions_keys_reader_register
        from executors.runner import executions_keys_of

        # The same, for a page of the list of executions, in one read.
        executions_keys_reader_register(executions_keys_of)

        from approvals.selectors import retries_due_reader_register
        from executors.runner import retries_due

        # When an executing proposal's next attempt on its channel is due, told beside its
        # status (approvals', which never imports this app).
        retries_due_reader_register(retries_due)

        from approvals.selectors import approval_said_reader_register
        from executors.registry import approval_said

        # What approving a proposal sets going, as its executor does it, said on a bulk
        # approval's confirmation (approvals', which never imports this app).
        approval_said_reader_register(approval_said)

        from executors.runner import proposals_hold_back_now
        from policies.services import kill_switch_holder_register

        # What a kill switch holds back goes back to a person as it is engaged, held as this
        # app holds it before an attempt (policies', which never imports this app).
        kill_switch_holder_register(proposals_hold_back_now)

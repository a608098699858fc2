"""What the apps above approvals are told of proposals that ended, in the transaction that
ended them: a decision settled them, their execution failed, they expired, or a change
superseded them; of failed executions a person sent to run again, and of executions carried
out; and of waiting proposals a change re-assessed or a reviewer approved (their
policy asking for more approvals). Feedback records each for
the agent, notifications update their Slack messages; each registers in its ``ready()`` (as
notifications register with ``lifecycle.on_proposals_moved``), so approvals never imports it.

Each hook is called with keyword arguments only, last in the caller's transaction: the
listeners write what agents learn, and such writes queue every other writer until the
transaction ends."""

from collections.abc import Callable
from typing import Any

Listener = Callable[..., Any]


class Hook:
    """Listeners called, in the order they registered, each time the hook is."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def __call__(self, **arguments: Any) -> None:
        for listener in self._listeners:
            listener(**arguments)

    def __repr__(self) -> str:
        return f"<Hook: {self.what}>"


# decisions=, actor=, proposed_payloads=: the decisions that settled their proposals.
decisions_settled = Hook("decisions settled proposals")
# failures= (each proposal with its error), actor=: executions that failed.
executions_failed = Hook("executions failed")
# proposals=, actor=: failed executions a person sent to run again (approved to run anew).
executions_retried = Hook("failed executions sent to run again")
# proposals=, actor=: approved proposals carried out, executed (each saying, as its callback
# does, what it changed).
executions_carried_out = Hook("approved proposals executed")
# proposals=, actor=: proposals whose review window closed before enough people approved them.
proposals_expired = Hook("proposals expired")
# superseded= (each proposal with what moved and why), actor=: proposals ended superseded.
proposals_superseded = Hook("proposals superseded")
# proposals=, actor=: waiting proposals re-assessed (their summary, figures and reasons now
# follow the ledger), still waiting.
proposals_reassessed = Hook("waiting proposals re-assessed")
# proposals=, actor=: waiting proposals approved by a reviewer, their approvals counted, still
# waiting for more (their policy asks for two or more).
approvals_counted = Hook("approvals counted on proposals that still wait")
# proposals=, actor=: waiting proposals a reviewer's edit started a new review round of (the
# approvals given were of the action before it), still waiting; called before
# ``approvals_counted`` counts the editor's approval in the new round.
reviews_restarted = Hook("an edit started waiting proposals' review again")
# proposals=, actor=: waiting proposals a reviewer withdrew for their agents (their
# ``withdrawal_note`` says why, if the reviewer did).
withdrawn_for_agents = Hook("a reviewer withdrew waiting proposals for their agents")
# proposals=, actor=: approved proposals sent back to a person before they ran (a kill switch
# held them back, or a re-assessment re-routed them), each waiting for a person again, its
# ``_said_to_agent`` why.
proposals_sent_back = Hook("approved proposals sent back to a person before they ran")

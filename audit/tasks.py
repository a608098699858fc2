from celery import shared_task

from audit.chain import chain_seal, chain_verification_run


@shared_task(name="audit.seal_chain")
def seal_chain() -> int:
    return chain_seal()


@shared_task(name="audit.verify_chain")
def verify_chain(verification_id: int) -> bool | None:
    verification = chain_verification_run(verification_id=verification_id)
    return None if verification is None else verification.holds

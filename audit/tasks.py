from celery import shared_task

from audit.chain import chain_seal


@shared_task(name="audit.seal_chain")
def seal_chain() -> int:
    return chain_seal()

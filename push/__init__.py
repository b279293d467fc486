"""Push notifications for members without a live socket (PROTOCOL.md, "Devices and keys").

    conversation actor ──XADD message job──> Redis Stream ``push:jobs`` (consumer group ``workers``)
    PushWorker (worker.py) reads it: a message job becomes one delivery job per offline device
    (jobs.py), each delivery job is sent by its provider (providers/) and acknowledged, retried
    later (backoff.py, a ZSET of due times), dead-lettered to ``push:dead``, or deferred while
    its provider's circuit breaker (breaker.py) is open.

Pure logic (breaker, backoff, jobs, targets) has no I/O; queue.py is the Redis adapter and
providers/ the HTTP ones. Nothing here imports Ray: serve_app.PushWorker runs worker.py.
"""

"""Entry point of the plugin (group `invokeai.plugins`, name `redis`).

Registering costs a string: `invokeai_redis.bus` (and with it redis-py) is imported by the kernel
only when the configuration selects `services.events = "redis"`.
"""

from __future__ import annotations

from invokeai_core import ServiceRegistrar, hookimpl


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    register(
        "events",
        "redis",
        "invokeai_redis.bus:RedisEventBus",
        description="Events shared through Redis pub/sub by every process of a deployment (a server sees "
        "the sessions another process runs); settings in [plugins.redis]",
        install_hint="pip install invokeai-redis (it brings redis-py)",
    )

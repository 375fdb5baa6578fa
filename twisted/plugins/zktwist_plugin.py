"""twistd plugin for zktwist: only a ServiceMaker, so plugin scans stay cheap."""

from twisted.application.service import ServiceMaker

zktwist = ServiceMaker(
    "zktwist",
    "zktwist.tap",
    "A ZooKeeper-compatible coordination service",
    "zktwist",
)

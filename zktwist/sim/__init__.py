"""The deterministic whole-ensemble simulator (``zktwist sim``).

One seed drives everything: a discrete-event queue, a simulated network,
disks and clocks around the **real** :class:`~zktwist.quorum.peer.QuorumPeer`
objects, simulated clients whose history goes to the linearizability checker,
and invariant checks after every step.  See docs/replication.md.
"""

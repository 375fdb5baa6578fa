"""Server-wide counters for srvr/stat/mntr, after Apache ZooKeeper 3.8's ServerStats and ServerMetrics.

:class:`ServerStats` keeps what ``srvr``/``stat`` show (packets, request
latency) and the ``mntr`` gauges that are counters (auth failures, client
response sizes).  It also holds the ``ServerMetrics`` counters and summaries
zktwist can measure: a feeder turns one on with :meth:`ServerStats.enable`
when it is wired, so ``mntr`` prints only metrics that are really measured
(plus the few that :data:`ALWAYS_COUNTERS` keeps for scrapers).

Numbers print the way Java does (:func:`java_double`, ``BigDecimal`` rounding
of averages to 4 places, ``Math.round`` of percentiles).
"""

from __future__ import annotations

import math
import random
import time

_random = random.random
from decimal import ROUND_HALF_UP, Decimal
from typing import Dict, List, Optional, Tuple

#: ZooTrace's default text trace mask (CLIENT_REQUEST | SERVER_PACKET | SESSION | WARNING).
DEFAULT_TRACE_MASK = 306

#: ServerMetrics counters that mntr always prints (netdata's go.d collector charts them; the
#: values are true for zktwist or counted here), in Apache ZooKeeper 3.8.0's mntr order.
ALWAYS_COUNTERS = ("throttled_ops", "stale_requests_dropped", "connection_rejected",
                   "stale_requests", "connection_drop_count")

#: Every ServerMetrics counter of 3.8.0, in the order a 3.8.0 standalone's mntr prints them.
COUNTER_ORDER = (
    "proposal_count", "watch_bytes", "outstanding_changes_removed", "throttled_ops",
    "stale_requests_dropped", "large_requests_rejected", "insecure_admin_count",
    "connection_rejected", "cnxn_closed_without_zk_server_running",
    "sessionless_connections_expired", "looking_count", "dead_watchers_queued", "stale_requests",
    "connection_drop_count", "learner_proposal_received_count", "digest_mismatches_count",
    "dead_watchers_cleared", "response_packet_cache_hits", "bytes_received_count",
    "add_dead_watcher_stall_time", "request_throttle_wait_count",
    "requests_not_forwarded_to_commit_processor", "response_packet_cache_misses",
    "ensemble_auth_success", "prep_processor_request_queued", "learner_commit_received_count",
    "stale_replies", "connection_request_count", "response_bytes", "ensemble_auth_fail",
    "diff_count", "response_packet_get_children_cache_misses", "connection_revalidate_count",
    "quit_leading_due_to_disloyal_voter", "snap_count", "unrecoverable_error_count",
    "unsuccessful_handshake", "commit_count", "stale_sessions_expired",
    "response_packet_get_children_cache_hits", "sync_processor_request_queued",
    "outstanding_changes_queued", "request_commit_queued", "ensemble_auth_skip",
    "skip_learner_request_to_next_processor_count", "tls_handshake_exceeded", "revalidate_count",
)

#: Every ServerMetrics summary (avg/min/max/cnt/sum) of 3.8.0, in a 3.8.0 standalone's mntr order.
SUMMARY_ORDER = (
    "socket_closing_time", "proposal_process_time", "leader_unavailable_time",
    "node_created_watch_count", "session_queues_drained", "write_commit_proc_req_queued",
    "connection_token_deficit", "read_commit_proc_req_queued", "node_deleted_watch_count",
    "startup_txns_load_time", "sync_processor_queue_size", "follower_sync_time",
    "prep_processor_queue_size", "fsynctime", "inflight_snap_count",
    "reads_issued_from_session_queue", "learner_request_processor_queue_size", "snapshottime",
    "unavailable_time", "startup_txns_loaded", "reads_after_write_in_session_queue",
    "requests_in_session_queue", "write_commit_proc_issued", "prep_process_time",
    "pending_session_queue_size", "time_waiting_empty_pool_in_commit_processor_read_ms",
    "commit_process_time", "dbinittime", "inflight_diff_count", "netty_queued_buffer_capacity",
    "election_time", "commit_commit_proc_req_queued", "sync_processor_batch_size",
    "node_children_watch_count", "write_batch_time_in_commit_processor", "read_commit_proc_issued",
    "concurrent_request_processing_in_commit_processor", "observer_sync_time",
    "node_changed_watch_count", "sync_process_time", "startup_snap_load_time",
)

#: Every ServerMetrics summary with percentiles (p50/p95/p99/p999), in 3.8.0's mntr order.
PERCENTILE_ORDER = (
    "prep_processor_queue_time_ms", "jvm_pause_time_ms", "close_session_prep_time",
    "read_commitproc_time_ms", "updatelatency", "local_write_committed_time_ms",
    "request_throttle_queue_time_ms", "readlatency", "quorum_ack_latency",
    "om_commit_process_time_ms", "read_final_proc_time_ms", "commit_propagation_latency",
    "dead_watchers_cleaner_latency", "write_final_proc_time_ms", "proposal_ack_creation_latency",
    "proposal_latency", "om_proposal_process_time_ms", "sync_processor_queue_and_flush_time_ms",
    "propagation_latency", "server_write_committed_time_ms", "sync_processor_queue_time_ms",
    "sync_processor_queue_flush_time_ms", "write_commitproc_time_ms",
)


#: What start-up and snapshots feed (:func:`record_recovery`, ``snapshottime`` per snapshot).
STARTUP_METRICS = ("snapshottime", "startup_snap_load_time", "startup_txns_load_time",
                   "startup_txns_loaded", "dbinittime")


def java_double(value: float) -> str:
    """``Double.toString``: plain notation in [1e-3, 1e7), else ``d.dddE±n``; always a fraction digit."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    a = abs(value)
    if 1e-3 <= a < 1e7:
        s = repr(value)
        if "e" in s or "E" in s:  # pragma: no cover - repr never uses exponents in this range
            s = format(Decimal(s), "f")
        return s if "." in s else s + ".0"
    sign, digits, exp = Decimal(repr(value)).as_tuple()
    ds = "".join(str(d) for d in digits).rstrip("0") or "0"
    exponent = int(exp) + len(digits) - 1
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return ("-" if sign else "") + mantissa + "E" + str(exponent)


def round4(value: float) -> float:
    """``new BigDecimal(value).setScale(4, RoundingMode.HALF_UP).doubleValue()``."""
    return float(Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def java_round(value: float) -> int:
    """``Math.round(double)``: floor(x + 0.5)."""
    return int(math.floor(value + 0.5))


class Summary:
    """AvgMinMaxCounter: avg (4 places), min, max, count and sum of data points."""

    percentiles = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total = 0
        self._min: Optional[int] = None
        self._max: Optional[int] = None

    def add(self, value: int) -> None:
        self.count += 1
        self.total += value
        if self._min is None or value < self._min:
            self._min = value
        if self._max is None or value > self._max:
            self._max = value

    @property
    def min(self) -> int:
        return 0 if self._min is None else self._min

    @property
    def max(self) -> int:
        return 0 if self._max is None else self._max

    @property
    def avg(self) -> float:
        return round4(self.total / self.count) if self.count else 0.0

    def values(self) -> List[Tuple[str, object]]:
        n = self.name
        return [("avg_" + n, self.avg), ("min_" + n, self.min), ("max_" + n, self.max),
                ("cnt_" + n, self.count), ("sum_" + n, self.total)]


class PercentileSummary(Summary):
    """AvgMinMaxPercentileCounter: a Summary plus p50/p95/p99/p999 over a uniform reservoir."""

    percentiles = True
    SIZE = 4096

    def reset(self) -> None:
        super().reset()
        self._seen = 0
        self._reservoir: List[int] = []

    def add(self, value: int) -> None:
        self.count += 1
        self.total += value
        if self._min is None or value < self._min:
            self._min = value
        if self._max is None or value > self._max:
            self._max = value
        seen = self._seen = self._seen + 1
        if seen <= self.SIZE:
            self._reservoir.append(value)
        else:
            r = int(_random() * seen)  # uniform in [0, seen), cheaper than randrange
            if r < self.SIZE:
                self._reservoir[r] = value

    def quantile(self, q: float) -> float:
        """Codahale's UniformSnapshot.getValue."""
        values = sorted(self._reservoir)
        n = len(values)
        if n == 0:
            return 0.0
        pos = q * (n + 1)
        index = int(pos)
        if index < 1:
            return float(values[0])
        if index >= n:
            return float(values[n - 1])
        lower, upper = values[index - 1], values[index]
        return lower + (pos - math.floor(pos)) * (upper - lower)

    def values(self) -> List[Tuple[str, object]]:
        n = self.name
        return super().values() + [
            ("p50_" + n, java_round(self.quantile(0.5))), ("p95_" + n, java_round(self.quantile(0.95))),
            ("p99_" + n, java_round(self.quantile(0.99))), ("p999_" + n, java_round(self.quantile(0.999))),
        ]


class BufferStats:
    """Last/min/max of a size; -1 until the first one (quorum.BufferStats)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.last = -1
        self.min = -1
        self.max = -1

    def set_last(self, size: int) -> None:
        self.last = size
        if self.min == -1 or size < self.min:
            self.min = size
        if size > self.max:
            self.max = size


class ServerStats:
    def __init__(self) -> None:
        self.response_sizes = BufferStats()
        self.counters: Dict[str, int] = {name: 0 for name in ALWAYS_COUNTERS}
        self.summaries: Dict[str, Summary] = {}
        self.reset()
        self.connections_total = 0
        self.auth_failed = 0
        self.log_failures = 0
        self.non_mtls_local_conn_count = 0
        self.non_mtls_remote_conn_count = 0
        self.trace_mask = DEFAULT_TRACE_MASK

    # -- srvr/stat ----------------------------------------------------------------

    def reset(self) -> None:
        """``srst``: ServerStats.reset() -- latency, packets, response sizes and every ServerMetric."""
        self.packets_received = 0
        self.packets_sent = 0
        self.min_latency = -1
        self.max_latency = 0
        self.total_latency = 0
        self.count = 0
        self.response_sizes.reset()
        for name in self.counters:
            self.counters[name] = 0
        for summary in self.summaries.values():
            summary.reset()

    def record_latency(self, ms: int, write: Optional[bool] = None) -> None:
        """A request was answered ``ms`` after it arrived; ``write``: it had a txn (updatelatency)."""
        if ms < 0:
            return
        if self.min_latency < 0 or ms < self.min_latency:
            self.min_latency = ms
        if ms > self.max_latency:
            self.max_latency = ms
        self.total_latency += ms
        self.count += 1
        if write is not None:
            summary = self.summaries.get("updatelatency" if write else "readlatency")
            if summary is not None:
                summary.add(ms)

    @property
    def avg_latency(self) -> float:
        """AvgMinMaxCounter.getAvg(): rounded HALF_UP to 4 places."""
        return round4(self.total_latency / self.count) if self.count else 0.0

    # -- ServerMetrics ---------------------------------------------------------------

    def enable(self, *names: str) -> None:
        """Declare metrics as measured so mntr prints them (call once, when the feeder is wired).

        A name in :data:`COUNTER_ORDER` is a counter; one in :data:`SUMMARY_ORDER` or
        :data:`PERCENTILE_ORDER` is a summary.
        """
        for name in names:
            if name in PERCENTILE_ORDER:
                self.summaries.setdefault(name, PercentileSummary(name))
            elif name in SUMMARY_ORDER:
                self.summaries.setdefault(name, Summary(name))
            elif name in COUNTER_ORDER:
                self.counters.setdefault(name, 0)
            else:
                raise KeyError("not an Apache ZooKeeper 3.8 metric: %r" % name)

    def incr(self, name: str, n: int = 1) -> None:
        """Add to a counter (ignored unless the counter is enabled)."""
        if name in self.counters:
            self.counters[name] += n

    def add(self, name: str, value: int) -> None:
        """Add a data point to a summary (ignored unless it is enabled)."""
        summary = self.summaries.get(name)
        if summary is not None:
            summary.add(value)

    def record_response_size(self, size: int) -> None:
        """A reply or notification of ``size`` bytes (header + body, without the length prefix)."""
        self.response_sizes.set_last(size)

    def record_sync(self, batch_size: int, fsync_ms: int) -> None:
        """One group commit: ``batch_size`` txns made durable by one fsync taking ``fsync_ms``."""
        self.add("sync_processor_batch_size", batch_size)
        self.add("fsynctime", fsync_ms)

    def metric_values(self) -> List[Tuple[str, object]]:
        """The enabled ServerMetrics as (key, value), in Apache ZooKeeper's mntr order."""
        out: List[Tuple[str, object]] = []
        counters = self.counters
        out.extend((n, counters[n]) for n in COUNTER_ORDER if n in counters)
        for order in (SUMMARY_ORDER, PERCENTILE_ORDER):
            for n in order:
                s = self.summaries.get(n)
                if s is not None:
                    out.extend(s.values())
        return out


def record_recovery(stats: "ServerStats", timings: Dict[str, int], started: float) -> None:
    """Start-up figures, as ZooKeeper's FileTxnSnapLog.restore and ZKDatabase.loadDataBase
    record them: snapshot load and txn replay times (ms) and txns replayed (``timings``,
    from :func:`~zktwist.server.snapshots.recover`), and the whole load (``dbinittime``,
    from ``started``, a ``time.monotonic()`` reading before storage opened)."""
    stats.add("startup_snap_load_time", timings.get("snap_load_ms", 0))
    txns_loaded = timings.get("txns_loaded", 0)
    if timings.get("snap_zxid") or txns_loaded:
        # An empty data dir has no log to replay: Apache records no txn load then.
        stats.add("startup_txns_load_time", timings.get("txns_load_ms", 0))
        stats.add("startup_txns_loaded", txns_loaded)
    stats.add("dbinittime", int((time.monotonic() - started) * 1000))

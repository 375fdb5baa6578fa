// Smoke test with Apache Curator 5 (Debian's libcurator-*-java) against a ZooKeeper server.
//
//   java -cp <curator, zookeeper and their dependency jars> CuratorSmoke.java 127.0.0.1:PORT /base
//
// Two CuratorFramework clients (two sessions) go through containers
// (creatingParentContainersIfNeeded), InterProcessMutex, LeaderLatch,
// CuratorCache and PersistentWatcher (persistent recursive watches, addWatch),
// a plain persistent watch and its removal, transactions (multi), pipelined
// background creates, digest ACLs, SharedCount and DistributedAtomicLong,
// getEphemerals / getAllChildrenNumber / sync / getConfig on the ZooKeeper
// handle, and TTL nodes (the server must run with extendedTypesEnabled=true).
// The expectations were checked against Apache ZooKeeper 3.8.
// Prints "PASS <step> <detail>" or "FAIL <step> <reason>" per step, then
// "DONE <passed> <failed>"; exits 0 only when every step passed.  Every wait is
// bounded, and a watchdog ends the program if a step hangs.

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.api.transaction.OperationType;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.watch.PersistentWatcher;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

public class CuratorSmoke {
    static final long WAIT_S = 10;
    static final long WATCHDOG_S = 75;

    static int passed = 0;
    static int failed = 0;

    interface Step {
        String run() throws Exception;
    }

    static void step(String name, Step body) {
        try {
            String detail = body.run();
            passed++;
            System.out.println("PASS " + name + " " + (detail == null ? "" : detail));
        } catch (Throwable t) {
            failed++;
            StringBuilder why = new StringBuilder(t.toString());
            StackTraceElement[] trace = t.getStackTrace();
            for (int i = 0; i < Math.min(4, trace.length); i++) {
                why.append(" | at ").append(trace[i]);
            }
            System.out.println("FAIL " + name + " " + why);
        }
        System.out.flush();
    }

    static void check(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return b == null ? "null" : new String(b, StandardCharsets.UTF_8);
    }

    static String poll(BlockingQueue<String> queue, String what) throws InterruptedException {
        String item = queue.poll(WAIT_S, TimeUnit.SECONDS);
        if (item == null) {
            throw new AssertionError("timed out waiting for " + what);
        }
        return item;
    }

    /** Take events until {@code last} arrives; all of them, in order. */
    static List<String> pollUntil(BlockingQueue<String> queue, String last) throws InterruptedException {
        List<String> got = new ArrayList<>();
        while (true) {
            String item = queue.poll(WAIT_S, TimeUnit.SECONDS);
            if (item == null) {
                throw new AssertionError("timed out waiting for " + last + "; got " + got);
            }
            got.add(item);
            if (item.equals(last)) {
                return got;
            }
        }
    }

    static CuratorFramework connect(String connectString) throws InterruptedException {
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connectString)
                .sessionTimeoutMs(10000)
                .connectionTimeoutMs(10000)
                .retryPolicy(new RetryNTimes(3, 200))
                .build();
        client.start();
        check(client.blockUntilConnected((int) WAIT_S, TimeUnit.SECONDS), "not connected to " + connectString);
        return client;
    }

    public static void main(String[] args) throws Exception {
        String connectString = args[0];
        String base = args[1];

        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(WATCHDOG_S * 1000);
                System.out.println("FAIL watchdog the program did not finish within " + WATCHDOG_S + " s");
                System.out.println("DONE " + passed + " " + (failed + 1));
                System.out.flush();
                Runtime.getRuntime().halt(3);
            } catch (InterruptedException e) {
                // finished in time
            }
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        List<AutoCloseable> toClose = new ArrayList<>();
        CuratorFramework[] clients = new CuratorFramework[2];
        step("connect", () -> {
            clients[0] = connect(connectString);
            toClose.add(clients[0]);
            clients[1] = connect(connectString);
            toClose.add(clients[1]);
            long s1 = clients[0].getZookeeperClient().getZooKeeper().getSessionId();
            long s2 = clients[1].getZookeeperClient().getZooKeeper().getSessionId();
            check(s1 != 0 && s2 != 0 && s1 != s2, "session ids " + s1 + " " + s2);
            return "sessions 0x" + Long.toHexString(s1) + " 0x" + Long.toHexString(s2);
        });
        if (clients[0] == null || clients[1] == null) {
            System.out.println("DONE " + passed + " " + failed);
            System.exit(1);
        }
        CuratorFramework c1 = clients[0];
        CuratorFramework c2 = clients[1];

        step("crud", () -> {
            c1.create().forPath(base, bytes("base"));
            check(str(c2.getData().forPath(base)).equals("base"), "getData of " + base);
            Stat stat = c1.setData().withVersion(0).forPath(base, bytes("v1"));
            check(stat.getVersion() == 1, "version after setData " + stat.getVersion());
            try {
                c1.setData().withVersion(0).forPath(base, bytes("stale"));
                throw new AssertionError("setData with a stale version succeeded");
            } catch (KeeperException.BadVersionException expected) {
                // as it should
            }
            try {
                c1.create().forPath(base);
                throw new AssertionError("second create succeeded");
            } catch (KeeperException.NodeExistsException expected) {
                // as it should
            }
            String eph = c1.create().withProtection().withMode(CreateMode.EPHEMERAL_SEQUENTIAL)
                    .forPath(base + "/prot", bytes("p"));
            check(eph.startsWith(base + "/_c_") && eph.endsWith("-prot0000000000"), "protected name " + eph);
            Stat ephStat = c2.checkExists().forPath(eph);
            check(ephStat != null && ephStat.getEphemeralOwner()
                    == c1.getZookeeperClient().getZooKeeper().getSessionId(), "ephemeral owner " + ephStat);
            c1.delete().guaranteed().forPath(eph);
            check(c2.checkExists().forPath(eph) == null, "deleted node still exists");
            return eph.substring(base.length() + 1);
        });

        step("containers", () -> {
            String deep = base + "/cont/a/b/leaf";
            String created = c1.create().creatingParentContainersIfNeeded().forPath(deep, bytes("leaf"));
            check(created.equals(deep), "created " + created);
            for (String p : Arrays.asList(base + "/cont", base + "/cont/a", base + "/cont/a/b")) {
                Stat stat = c2.checkExists().forPath(p);
                check(stat != null, "parent " + p + " missing");
                // Clients see 0 as the ephemeralOwner of a container (Apache ZooKeeper hides the marker).
                check(stat.getEphemeralOwner() == 0, p + " ephemeralOwner " + stat.getEphemeralOwner());
            }
            String direct = c1.create().withMode(CreateMode.CONTAINER).forPath(base + "/cont2");
            check(direct.equals(base + "/cont2"), "container " + direct);
            // creatingParentContainersIfNeeded for other builders: checkExists creates parents too.
            c1.checkExists().creatingParentContainersIfNeeded().forPath(base + "/cont3/x/y");
            check(c2.checkExists().forPath(base + "/cont3/x") != null, "checkExists did not create parents");
            return String.join(",", c2.getChildren().forPath(base + "/cont/a"));
        });

        step("mutex", () -> {
            String lockPath = base + "/lock";
            InterProcessMutex m1 = new InterProcessMutex(c1, lockPath);
            InterProcessMutex m2 = new InterProcessMutex(c2, lockPath);
            check(m1.acquire(WAIT_S, TimeUnit.SECONDS), "client 1 could not take a free lock");
            check(m1.acquire(WAIT_S, TimeUnit.SECONDS), "client 1 could not re-enter its lock");
            check(!m2.acquire(300, TimeUnit.MILLISECONDS), "client 2 took a lock client 1 holds");
            ExecutorService pool = Executors.newSingleThreadExecutor();
            try {
                Future<Boolean> waiting = pool.submit(() -> m2.acquire(WAIT_S, TimeUnit.SECONDS));
                Thread.sleep(300);
                check(!waiting.isDone(), "client 2 got the lock while client 1 still held it");
                List<String> nodes = c1.getChildren().forPath(lockPath);
                check(nodes.size() == 2, "lock nodes while contended " + nodes);
                m1.release();
                check(!waiting.isDone() || !waiting.get(), "client 2 got the lock after one of two releases");
                m1.release();
                check(waiting.get(WAIT_S, TimeUnit.SECONDS), "client 2 did not get the released lock");
                check(m2.isAcquiredInThisProcess(), "client 2 does not hold the lock");
                List<String> after = c1.getChildren().forPath(lockPath);
                check(after.size() == 1, "lock nodes held by client 2 " + after);
                // A mutex belongs to the thread that acquired it.
                pool.submit(() -> {
                    m2.release();
                    return null;
                }).get(WAIT_S, TimeUnit.SECONDS);
                check(c1.getChildren().forPath(lockPath).isEmpty(), "lock nodes left after release");
                return "contended=" + nodes.size();
            } finally {
                pool.shutdownNow();
            }
        });

        step("leader-latch", () -> {
            String latchPath = base + "/leader";
            LeaderLatch l1 = new LeaderLatch(c1, latchPath, "one");
            LeaderLatch l2 = new LeaderLatch(c2, latchPath, "two");
            toClose.add(l2);
            l1.start();
            check(l1.await(WAIT_S, TimeUnit.SECONDS), "the only participant is not the leader");
            l2.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (l2.getParticipants().size() < 2 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            check(l2.getParticipants().size() == 2, "participants " + l2.getParticipants());
            check(!l2.hasLeadership(), "two leaders");
            check(l2.getLeader().getId().equals("one"), "leader seen by 2: " + l2.getLeader());
            l1.close();
            check(l2.await(WAIT_S, TimeUnit.SECONDS), "leadership did not pass to client 2");
            check(l2.getLeader().getId().equals("two"), "leader after handover " + l2.getLeader());
            l2.close();
            toClose.remove(l2);
            return "handover one->two";
        });

        step("curator-cache", () -> {
            String cachePath = base + "/cache";
            c1.create().forPath(cachePath, bytes("root"));
            BlockingQueue<String> events = new LinkedBlockingQueue<>();
            CountDownLatch initialized = new CountDownLatch(1);
            CuratorCache cache = CuratorCache.build(c2, cachePath);
            toClose.add(cache);
            cache.listenable().addListener(CuratorCacheListener.builder()
                    .forCreates(node -> events.add("create " + node.getPath() + " " + str(node.getData())))
                    .forChanges((old, node) -> events.add("change " + node.getPath() + " " + str(node.getData())))
                    .forDeletes(old -> events.add("delete " + old.getPath()))
                    .forInitialized(() -> events.add("initialized"))
                    .build());
            cache.start();
            List<String> initial = pollUntil(events, "initialized");
            check(initial.equals(Arrays.asList("create " + cachePath + " root", "initialized")), "initial " + initial);
            // One change at a time: the cache reads data after each event, so a
            // quicker second change could be seen as part of the first.
            List<String> got = new ArrayList<>();
            c1.create().forPath(cachePath + "/a", bytes("1"));
            got.add(poll(events, "the cache's create event"));
            c1.setData().forPath(cachePath + "/a", bytes("2"));
            got.add(poll(events, "the cache's change event"));
            c1.create().forPath(cachePath + "/a/b", bytes("3"));
            got.add(poll(events, "the cache's create event of a grandchild"));
            c1.delete().forPath(cachePath + "/a/b");
            got.add(poll(events, "the cache's delete event of a grandchild"));
            c1.delete().forPath(cachePath + "/a");
            got.add(poll(events, "the cache's delete event"));
            List<String> want = Arrays.asList(
                    "create " + cachePath + "/a 1",
                    "change " + cachePath + "/a 2",
                    "create " + cachePath + "/a/b 3",
                    "delete " + cachePath + "/a/b",
                    "delete " + cachePath + "/a");
            check(got.equals(want), "cache events " + got);
            check(cache.size() == 1, "cache size " + cache.size());
            cache.close();
            toClose.remove(cache);
            return got.size() + " events";
        });

        step("persistent-recursive-watch", () -> {
            String watchPath = base + "/pw";
            c1.create().forPath(watchPath);
            BlockingQueue<String> events = new LinkedBlockingQueue<>();
            BlockingQueue<String> resets = new LinkedBlockingQueue<>();
            PersistentWatcher watcher = new PersistentWatcher(c2, watchPath, true);
            toClose.add(watcher);
            watcher.getListenable().addListener(e -> events.add(e.getType() + " " + e.getPath()));
            watcher.getResetListenable().addListener(() -> resets.add("reset"));
            watcher.start();
            poll(resets, "the persistent recursive watch to be set");
            c1.create().forPath(watchPath + "/x", bytes("1"));
            c1.create().forPath(watchPath + "/x/y", bytes("2"));
            c1.setData().forPath(watchPath + "/x/y", bytes("3"));
            c1.setData().forPath(watchPath + "/x/y", bytes("4"));
            c1.delete().forPath(watchPath + "/x/y");
            c1.setData().forPath(watchPath, bytes("5"));
            c1.create().forPath(watchPath + "/end");
            List<String> got = pollUntil(events, "NodeCreated " + watchPath + "/end");
            // Recursive persistent watches fire every time and send no NodeChildrenChanged.
            List<String> want = Arrays.asList(
                    "NodeCreated " + watchPath + "/x",
                    "NodeCreated " + watchPath + "/x/y",
                    "NodeDataChanged " + watchPath + "/x/y",
                    "NodeDataChanged " + watchPath + "/x/y",
                    "NodeDeleted " + watchPath + "/x/y",
                    "NodeDataChanged " + watchPath,
                    "NodeCreated " + watchPath + "/end");
            check(got.equals(want), "recursive watch events " + got);
            watcher.close();
            toClose.remove(watcher);
            return got.size() + " events";
        });

        step("persistent-watch-and-remove", () -> {
            String path = base + "/pw1";
            c1.create().forPath(path, bytes("0"));
            BlockingQueue<String> events = new LinkedBlockingQueue<>();
            Watcher watcher = e -> events.add(e.getType() + " " + e.getPath());
            c2.watchers().add().withMode(AddWatchMode.PERSISTENT).usingWatcher(watcher).forPath(path);
            c1.setData().forPath(path, bytes("1"));
            c1.setData().forPath(path, bytes("2"));
            c1.create().forPath(path + "/kid");
            c1.create().forPath(path + "/kid/grandkid");  // not watched: the watch is not recursive
            c1.delete().forPath(path + "/kid/grandkid");
            c1.delete().forPath(path + "/kid");
            List<String> got = pollUntil(events, "NodeChildrenChanged " + path);
            got.addAll(pollUntil(events, "NodeChildrenChanged " + path));
            List<String> want = Arrays.asList(
                    "NodeDataChanged " + path,
                    "NodeDataChanged " + path,
                    "NodeChildrenChanged " + path,
                    "NodeChildrenChanged " + path);
            check(got.equals(want), "persistent watch events " + got);
            c2.watchers().remove(watcher).forPath(path);
            String removed = poll(events, "PersistentWatchRemoved");
            check(removed.equals("PersistentWatchRemoved " + path), "after remove: " + removed);
            c1.setData().forPath(path, bytes("3"));
            c2.getData().forPath(path);  // a round trip on client 2's connection
            Thread.sleep(200);
            check(events.isEmpty(), "events after the watch was removed: " + events);
            return got.size() + " events, then removed";
        });

        step("transaction", () -> {
            String tx = base + "/tx";
            c1.create().forPath(tx, bytes("t"));
            c1.create().forPath(tx + "/old");
            List<CuratorTransactionResult> results = c1.transaction().forOperations(
                    c1.transactionOp().create().forPath(tx + "/new", bytes("a")),
                    c1.transactionOp().setData().withVersion(0).forPath(tx + "/new", bytes("b")),
                    c1.transactionOp().check().withVersion(0).forPath(tx),
                    c1.transactionOp().delete().forPath(tx + "/old"),
                    c1.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath(tx + "/seq-"));
            List<OperationType> types = new ArrayList<>();
            for (CuratorTransactionResult r : results) {
                types.add(r.getType());
            }
            check(types.equals(Arrays.asList(OperationType.CREATE, OperationType.SET_DATA, OperationType.CHECK,
                    OperationType.DELETE, OperationType.CREATE)), "result types " + types);
            check(results.get(0).getResultPath().equals(tx + "/new"), "create result " + results.get(0).getResultPath());
            check(results.get(1).getResultStat().getVersion() == 1, "setData result " + results.get(1).getResultStat());
            // The sequence number is the parent's cversion: +1 for /old, +1 for /new; Apache
            // ZooKeeper 3.8 does not count the delete of /old earlier in the same multi.
            check(results.get(4).getResultPath().equals(tx + "/seq-0000000002"), "sequential " + results.get(4).getResultPath());
            check(str(c2.getData().forPath(tx + "/new")).equals("b"), "data after multi");
            check(c2.checkExists().forPath(tx + "/old") == null, "deleted in multi but still there");

            try {
                c1.transaction().forOperations(
                        c1.transactionOp().create().forPath(tx + "/never"),
                        c1.transactionOp().check().withVersion(42).forPath(tx));
                throw new AssertionError("a multi with a failing check succeeded");
            } catch (KeeperException.BadVersionException expected) {
                List<org.apache.zookeeper.OpResult> res = expected.getResults();
                check(res != null && res.size() == 2, "failed multi results " + res);
                int e0 = ((org.apache.zookeeper.OpResult.ErrorResult) res.get(0)).getErr();
                int e1 = ((org.apache.zookeeper.OpResult.ErrorResult) res.get(1)).getErr();
                check(e0 == 0 && e1 == KeeperException.Code.BADVERSION.intValue(), "per-op errors " + e0 + "," + e1);
            }
            check(c2.checkExists().forPath(tx + "/never") == null, "a failed multi applied its create");
            return "types=" + types;
        });

        step("pipelined", () -> {
            // 200 background creates in flight at once: every callback, in request order.
            String dir = base + "/bulk";
            c1.create().forPath(dir);
            int n = 200;
            List<String> done = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch all = new CountDownLatch(n);
            for (int i = 0; i < n; i++) {
                c1.create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).inBackground((client, event) -> {
                    done.add(event.getResultCode() + " " + event.getName());
                    all.countDown();
                }).forPath(dir + "/n-", bytes("x" + i));
            }
            check(all.await(WAIT_S, TimeUnit.SECONDS), "only " + done.size() + " of " + n + " callbacks");
            for (int i = 0; i < n; i++) {
                String want = String.format("0 %s/n-%010d", dir, i);
                check(done.get(i).equals(want), "callback " + i + ": " + done.get(i) + ", expected " + want);
            }
            Stat stat = c2.checkExists().forPath(dir);
            check(stat.getNumChildren() == n && stat.getCversion() == n, "children " + stat.getNumChildren());
            return n + " in order";
        });

        step("acl", () -> {
            CuratorFramework c3 = CuratorFrameworkFactory.builder()
                    .connectString(connectString)
                    .sessionTimeoutMs(10000)
                    .connectionTimeoutMs(10000)
                    .retryPolicy(new RetryNTimes(3, 200))
                    .authorization("digest", bytes("alice:secret"))
                    .build();
            toClose.add(c3);
            c3.start();
            check(c3.blockUntilConnected((int) WAIT_S, TimeUnit.SECONDS), "client 3 not connected");
            String secret = base + "/secret";
            c3.create().withACL(ZooDefs.Ids.CREATOR_ALL_ACL).forPath(secret, bytes("s"));
            List<ACL> acl = c3.getACL().forPath(secret);
            String alice = DigestAuthenticationProvider.generateDigest("alice:secret");
            check(acl.equals(Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("digest", alice)))),
                    "ACL " + acl);
            try {
                c2.getData().forPath(secret);
                throw new AssertionError("read without auth succeeded");
            } catch (KeeperException.NoAuthException expected) {
                // as it should
            }
            try {
                c2.getACL().forPath(secret);
                throw new AssertionError("getACL without READ or ADMIN permission succeeded");
            } catch (KeeperException.NoAuthException expected) {
                // as it should
            }
            check(str(c3.getData().forPath(secret)).equals("s"), "owner cannot read");
            try {
                c1.create().withACL(ZooDefs.Ids.CREATOR_ALL_ACL).forPath(base + "/no-auth");
                throw new AssertionError("CREATOR_ALL_ACL without auth was accepted");
            } catch (KeeperException.InvalidACLException expected) {
                // as it should
            }
            Stat stat = c3.setACL().withVersion(0).withACL(ZooDefs.Ids.READ_ACL_UNSAFE).forPath(secret);
            check(stat.getAversion() == 1, "aversion " + stat.getAversion());
            check(str(c2.getData().forPath(secret)).equals("s"), "world cannot read a READ_ACL_UNSAFE node");
            try {
                c2.setData().forPath(secret, bytes("x"));
                throw new AssertionError("write to a read-only node succeeded");
            } catch (KeeperException.NoAuthException expected) {
                // as it should
            }
            c3.close();
            toClose.remove(c3);
            return "digest " + alice.substring(0, alice.indexOf(':'));
        });

        step("counters", () -> {
            SharedCount count1 = new SharedCount(c1, base + "/count", 0);
            SharedCount count2 = new SharedCount(c2, base + "/count", 0);
            toClose.add(count1);
            toClose.add(count2);
            BlockingQueue<String> seen = new LinkedBlockingQueue<>();
            count2.addListener(new SharedCountListener() {
                @Override
                public void countHasChanged(SharedCountReader reader, int newCount) {
                    seen.add("count " + newCount);
                }

                @Override
                public void stateChanged(CuratorFramework client, ConnectionState state) {
                    // not interesting here
                }
            });
            count1.start();
            count2.start();
            VersionedValue<Integer> before = count1.getVersionedValue();
            check(before.getValue() == 0, "initial count " + before.getValue());
            check(count1.trySetCount(before, 5), "first versioned set failed");
            check(poll(seen, "client 2 to see the new count").equals("count 5"), "client 2 saw another count");
            check(!count2.trySetCount(before, 6), "a set with a stale version succeeded");
            check(count2.getCount() == 5, "count after the stale set " + count2.getCount());
            count1.close();
            count2.close();
            toClose.remove(count1);
            toClose.remove(count2);

            DistributedAtomicLong n1 = new DistributedAtomicLong(c1, base + "/long", new RetryNTimes(5, 50));
            DistributedAtomicLong n2 = new DistributedAtomicLong(c2, base + "/long", new RetryNTimes(5, 50));
            AtomicValue<Long> r1 = n1.increment();
            check(r1.succeeded() && r1.postValue() == 1, "increment " + r1.postValue());
            AtomicValue<Long> r2 = n2.add(10L);
            check(r2.succeeded() && r2.preValue() == 1 && r2.postValue() == 11, "add " + r2.postValue());
            check(n1.get().postValue() == 11, "get " + n1.get().postValue());
            return "count=5 long=11";
        });

        step("raw-zookeeper", () -> {
            ZooKeeper zk1 = c1.getZookeeperClient().getZooKeeper();
            String raw = base + "/raw";
            c1.create().forPath(raw);
            c1.create().forPath(raw + "/p");
            c1.create().withMode(CreateMode.EPHEMERAL).forPath(raw + "/p/e1");
            c1.create().withMode(CreateMode.EPHEMERAL).forPath(raw + "/e2");
            c2.create().withMode(CreateMode.EPHEMERAL).forPath(raw + "/other");
            List<String> mine = new ArrayList<>(zk1.getEphemerals(raw));
            Collections.sort(mine);
            check(mine.equals(Arrays.asList(raw + "/e2", raw + "/p/e1")), "getEphemerals " + mine);
            List<String> all = zk1.getEphemerals();
            check(all.containsAll(mine) && !all.contains(raw + "/other"), "getEphemerals() " + all);
            int descendants = zk1.getAllChildrenNumber(raw);
            check(descendants == 4, "getAllChildrenNumber " + descendants);
            CountDownLatch synced = new CountDownLatch(1);
            int[] syncRc = {Integer.MIN_VALUE};
            String[] syncPath = {null};
            zk1.sync(raw, (rc, path, ctx) -> {
                syncRc[0] = rc;
                syncPath[0] = path;
                synced.countDown();
            }, null);
            check(synced.await(WAIT_S, TimeUnit.SECONDS), "sync did not complete");
            check(syncRc[0] == 0 && raw.equals(syncPath[0]), "sync rc " + syncRc[0] + " path " + syncPath[0]);
            byte[] config = zk1.getConfig(false, null);
            check(config != null, "getConfig returned null");
            return "ephemerals=" + mine.size() + " descendants=" + descendants + " config=" + config.length + "B";
        });

        step("ttl", () -> {
            String ttl = base + "/ttl";
            String created = c1.create().withTtl(60000).withMode(CreateMode.PERSISTENT_WITH_TTL)
                    .forPath(ttl, bytes("ttl"));
            check(created.equals(ttl), "created " + created);
            Stat stat = c2.checkExists().forPath(ttl);
            check(stat != null && stat.getEphemeralOwner() == 0, "TTL node stat " + stat);
            check(str(c2.getData().forPath(ttl)).equals("ttl"), "TTL node data");
            String seq = c1.create().withTtl(60000).withMode(CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL)
                    .forPath(ttl + "/s-");
            check(seq.equals(ttl + "/s-0000000000"), "sequential TTL " + seq);
            // TTL creates in a multi: Curator leaves the result path of a createTTL op
            // empty, so this part uses the ZooKeeper handle underneath.
            List<CuratorTransactionResult> results = c1.transaction().forOperations(
                    c1.transactionOp().create().withTtl(60000).withMode(CreateMode.PERSISTENT_WITH_TTL)
                            .forPath(ttl + "/in-multi", bytes("m")));
            check(results.size() == 1 && results.get(0).getType() == OperationType.CREATE
                    && results.get(0).getError() == 0, "Curator multi with a TTL create " + results);
            check(str(c2.getData().forPath(ttl + "/in-multi")).equals("m"), "TTL node made in a multi");
            org.apache.zookeeper.ZooKeeper zk = c1.getZookeeperClient().getZooKeeper();
            List<org.apache.zookeeper.OpResult> raw = zk.multi(Arrays.asList(
                    org.apache.zookeeper.Op.create(ttl + "/raw-", bytes("r"),
                            org.apache.zookeeper.ZooDefs.Ids.OPEN_ACL_UNSAFE,
                            CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, 60000),
                    org.apache.zookeeper.Op.check(ttl, 0)));
            org.apache.zookeeper.OpResult.CreateResult cr = (org.apache.zookeeper.OpResult.CreateResult) raw.get(0);
            // Apache ZooKeeper 3.8 answers a createTTL op of a multi with a create2 result.
            check(cr.getType() == org.apache.zookeeper.ZooDefs.OpCode.create2,
                    "createTTL result type " + cr.getType());
            check(cr.getPath().equals(ttl + "/raw-0000000002"), "createTTL result path " + cr.getPath());
            check(cr.getStat() != null && cr.getStat().getVersion() == 0 && cr.getStat().getEphemeralOwner() == 0,
                    "createTTL result stat " + cr.getStat());
            return seq.substring(base.length() + 1);
        });

        step("cleanup", () -> {
            c1.delete().deletingChildrenIfNeeded().forPath(base);
            check(c2.checkExists().forPath(base) == null, "base still exists");
            return null;
        });

        Collections.reverse(toClose);
        for (AutoCloseable c : toClose) {
            try {
                c.close();
            } catch (Exception e) {
                System.out.println("NOTE close " + e);
            }
        }
        System.out.println("DONE " + passed + " " + failed);
        System.out.flush();
        System.exit(failed == 0 ? 0 : 1);
    }
}

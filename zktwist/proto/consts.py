"""Numbers of Apache ZooKeeper's client protocol (ZooDefs, KeeperException.Code, Watcher)."""


class OpCode:
    notification = 0
    create = 1
    delete = 2
    exists = 3
    getData = 4
    setData = 5
    getACL = 6
    setACL = 7
    getChildren = 8
    sync = 9
    ping = 11
    getChildren2 = 12
    check = 13
    multi = 14
    create2 = 15
    reconfig = 16
    checkWatches = 17
    removeWatches = 18
    createContainer = 19
    deleteContainer = 20
    createTTL = 21
    multiRead = 22
    auth = 100
    setWatches = 101
    sasl = 102
    getEphemerals = 103
    getAllChildrenNumber = 104
    setWatches2 = 105
    addWatch = 106
    whoAmI = 107
    createSession = -10
    closeSession = -11
    error = -1


class Err:
    OK = 0
    SYSTEMERROR = -1
    RUNTIMEINCONSISTENCY = -2
    DATAINCONSISTENCY = -3
    CONNECTIONLOSS = -4
    MARSHALLINGERROR = -5
    UNIMPLEMENTED = -6
    OPERATIONTIMEOUT = -7
    BADARGUMENTS = -8
    UNKNOWNSESSION = -12
    NEWCONFIGNOQUORUM = -13
    RECONFIGINPROGRESS = -14
    APIERROR = -100
    NONODE = -101
    NOAUTH = -102
    BADVERSION = -103
    NOCHILDRENFOREPHEMERALS = -108
    NODEEXISTS = -110
    NOTEMPTY = -111
    SESSIONEXPIRED = -112
    INVALIDCALLBACK = -113
    INVALIDACL = -114
    AUTHFAILED = -115
    SESSIONMOVED = -118
    NOTREADONLY = -119
    EPHEMERALONLOCALSESSION = -120
    NOWATCHER = -121
    REQUESTTIMEOUT = -122
    RECONFIGDISABLED = -123
    SESSIONCLOSEDREQUIRESASLAUTH = -124
    QUOTAEXCEEDED = -125
    THROTTLEDOP = -127


class EventType:
    NONE = -1
    NodeCreated = 1
    NodeDeleted = 2
    NodeDataChanged = 3
    NodeChildrenChanged = 4


class KeeperState:
    Disconnected = 0
    SyncConnected = 3
    AuthFailed = 4
    ConnectedReadOnly = 5
    Expired = -112


class WatcherType:
    Children = 1
    Data = 2
    Any = 3
    Persistent = 4  # 3.9.0+
    PersistentRecursive = 5  # 3.9.0+


class AddWatchMode:
    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


class Perms:
    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


class CreateMode:
    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    PERSISTENT_WITH_TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6

    VALID = frozenset(range(7))
    EPHEMERAL_MODES = frozenset((1, 3))
    SEQUENTIAL_MODES = frozenset((2, 3, 6))
    TTL_MODES = frozenset((5, 6))


# Special xids.
NOTIFICATION_XID = -1
PING_XID = -2
AUTH_XID = -4
SET_WATCHES_XID = -8

# ephemeralOwner markers (EphemeralType.java).
CONTAINER_EPHEMERAL_OWNER = -0x8000000000000000  # Long.MIN_VALUE
TTL_MASK = 0xFF00000000000000
MAX_TTL = 0x000000FFFFFFFFFF  # 2^40 - 1 ms
DEFAULT_JUTE_MAXBUFFER = 0xFFFFF

NAMES = {v: k for k, v in vars(OpCode).items() if not k.startswith("_")}
ERROR_NAMES = {v: k for k, v in vars(Err).items() if not k.startswith("_")}

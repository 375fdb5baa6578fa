'use strict';
// Smoke test with node-zookeeper-client (an unmodified pure-JavaScript client).
//
//   NODE_PATH=<dir>/node_modules node smoke.js 127.0.0.1:PORT /base/path
//
// Prints one "PASS <step> <detail>" line per step that behaved as Apache
// ZooKeeper 3.8 does, "FAIL <step> <reason>" otherwise, then "DONE <passed> <failed>";
// exits 0 only when every step passed.  Every wait is bounded.

const crypto = require('crypto');
const zookeeper = require('node-zookeeper-client');
const { CreateMode, Event, Exception, ACL } = zookeeper;

const connectString = process.argv[2];
const base = process.argv[3];
const WAIT_MS = 10000;

let passed = 0;
let failed = 0;
const clients = [];

function pass(step, detail) {
    passed += 1;
    console.log(`PASS ${step} ${detail === undefined ? '' : detail}`);
}

function fail(step, reason) {
    failed += 1;
    console.log(`FAIL ${step} ${reason}`);
}

function check(cond, message) {
    if (!cond) {
        throw new Error(message);
    }
}

function withTimeout(promise, what, ms = WAIT_MS) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

// Promisified client calls: resolve with the callback's results (an array when
// there are several), reject with the client's Exception.
function call(client, method, ...args) {
    return withTimeout(new Promise((resolve, reject) => {
        client[method](...args, (error, ...results) => {
            if (error) {
                reject(error);
            } else {
                resolve(results.length > 1 ? results : results[0]);
            }
        });
    }), `${method}(${typeof args[0] === 'string' ? args[0] : ''})`);
}

// Expect the call to fail with the given Exception code name (e.g. 'NO_NODE').
async function expectError(client, codeName, method, ...args) {
    try {
        await call(client, method, ...args);
    } catch (error) {
        check(typeof error.getCode === 'function', `${method}: not a ZooKeeper error: ${error}`);
        check(error.getCode() === Exception[codeName],
            `${method}: expected ${codeName}, got ${error.getName()} (${error.getCode()})`);
        return error;
    }
    throw new Error(`${method}(${args[0]}) succeeded; expected ${codeName}`);
}

// A one-shot watcher whose event can be awaited.
function watcher() {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    const fn = (event) => resolve(event);
    fn.event = (what) => withTimeout(promise, what);
    return fn;
}

function connect(name) {
    const client = zookeeper.createClient(connectString, { sessionTimeout: 10000, spinDelay: 100, retries: 0 });
    clients.push(client);
    return withTimeout(new Promise((resolve) => {
        client.once('connected', () => resolve(client));
        client.connect();
    }), `${name} to connect`);
}

function hex(buffer) {
    return Buffer.from(buffer).toString('hex');
}

async function step(name, fn) {
    try {
        const detail = await fn();
        pass(name, detail);
    } catch (error) {
        fail(name, (error && error.stack ? error.stack.split('\n').slice(0, 3).join(' | ') : String(error)));
    }
}

async function main() {
    let a;
    let b;
    await step('connect', async () => {
        a = await connect('client A');
        b = await connect('client B');
        check(a.getState() === zookeeper.State.SYNC_CONNECTED, `state ${a.getState()}`);
        check(hex(a.getSessionId()) !== hex(b.getSessionId()), 'two clients share a session id');
        check(a.getSessionTimeout() > 0, `negotiated timeout ${a.getSessionTimeout()}`);
        return `timeout=${a.getSessionTimeout()}`;
    });
    if (!a || !b) {
        return;
    }

    await step('create-persistent', async () => {
        const path = await call(a, 'create', base, Buffer.from('base'), CreateMode.PERSISTENT);
        check(path === base, `created ${path}`);
        await expectError(a, 'NODE_EXISTS', 'create', base, Buffer.from('again'));
        return path;
    });

    await step('create-ephemeral', async () => {
        const path = await call(a, 'create', `${base}/eph`, Buffer.from('e'), CreateMode.EPHEMERAL);
        const stat = await call(b, 'exists', path);
        check(stat, 'client B does not see the ephemeral node');
        check(hex(stat.ephemeralOwner) === hex(a.getSessionId()),
            `ephemeralOwner ${hex(stat.ephemeralOwner)} != session ${hex(a.getSessionId())}`);
        await expectError(a, 'NO_CHILDREN_FOR_EPHEMERALS', 'create', `${path}/child`);
        return path;
    });

    await step('create-sequential', async () => {
        // The sequence number is the parent's cversion: /eph made it 1.
        const s1 = await call(a, 'create', `${base}/seq-`, CreateMode.PERSISTENT_SEQUENTIAL);
        const s2 = await call(a, 'create', `${base}/seq-`, CreateMode.PERSISTENT_SEQUENTIAL);
        const e3 = await call(a, 'create', `${base}/eseq-`, CreateMode.EPHEMERAL_SEQUENTIAL);
        check(s1 === `${base}/seq-0000000001`, `first sequential ${s1}`);
        check(s2 === `${base}/seq-0000000002`, `second sequential ${s2}`);
        check(e3 === `${base}/eseq-0000000003`, `ephemeral sequential ${e3}`);
        return [s1, s2, e3].map((p) => p.slice(base.length + 1)).join(',');
    });

    await step('get-set-watch', async () => {
        const w = watcher();
        const [data, stat] = await call(b, 'getData', base, w);
        check(data.toString() === 'base', `data ${data}`);
        check(stat.version === 0 && stat.dataLength === 4, `version ${stat.version} length ${stat.dataLength}`);
        const stat2 = await call(a, 'setData', base, Buffer.from('v1'), 0);
        check(stat2.version === 1, `version after set ${stat2.version}`);
        const event = await w.event('NODE_DATA_CHANGED');
        check(event.getType() === Event.NODE_DATA_CHANGED, `event ${event}`);
        check(event.getPath() === base, `event path ${event.getPath()}`);
        await expectError(a, 'BAD_VERSION', 'setData', base, Buffer.from('stale'), 0);
        const [data3, stat3] = await call(b, 'getData', base);
        check(data3.toString() === 'v1' && stat3.version === 1, `after bad version: ${data3} v${stat3.version}`);
        await expectError(a, 'NO_NODE', 'getData', `${base}/missing`);
        return `${event}`;
    });

    await step('get-children-watch', async () => {
        const w = watcher();
        const [children, stat] = await call(b, 'getChildren', base, w);
        const sorted = children.slice().sort();
        const expected = ['eph', 'eseq-0000000003', 'seq-0000000001', 'seq-0000000002'];
        check(JSON.stringify(sorted) === JSON.stringify(expected), `children ${sorted}`);
        check(stat.numChildren === 4 && stat.cversion === 4, `numChildren ${stat.numChildren} cversion ${stat.cversion}`);
        await call(a, 'create', `${base}/kid`);
        const event = await w.event('NODE_CHILDREN_CHANGED');
        check(event.getType() === Event.NODE_CHILDREN_CHANGED && event.getPath() === base, `event ${event}`);
        return sorted.join(',');
    });

    await step('exists-watch', async () => {
        const w = watcher();
        const stat = await call(b, 'exists', `${base}/later`, w);
        check(stat === null || stat === undefined, 'exists on a missing node returned a stat');
        await call(a, 'create', `${base}/later`, Buffer.from('x'));
        const created = await w.event('NODE_CREATED');
        check(created.getType() === Event.NODE_CREATED && created.getPath() === `${base}/later`, `event ${created}`);
        const w2 = watcher();
        check(await call(b, 'exists', `${base}/later`, w2), 'exists after create returned no stat');
        await call(a, 'remove', `${base}/later`, -1);
        const deleted = await w2.event('NODE_DELETED');
        check(deleted.getType() === Event.NODE_DELETED, `event ${deleted}`);
        return `${created} ${deleted}`;
    });

    await step('multi', async () => {
        const results = await withTimeout(new Promise((resolve, reject) => {
            a.transaction()
                .create(`${base}/tx`, Buffer.from('t0'))
                .setData(`${base}/tx`, Buffer.from('t1'), 0)
                .check(base, 1)
                .remove(`${base}/seq-0000000001`, 0)
                .commit((error, res) => (error ? reject(error) : resolve(res)));
        }), 'multi');
        check(results.length === 4, `${results.length} results`);
        const [data, stat] = await call(b, 'getData', `${base}/tx`);
        check(data.toString() === 't1' && stat.version === 1, `tx node ${data} v${stat.version}`);
        check(!(await call(b, 'exists', `${base}/seq-0000000001`)), 'removed node still exists');

        // A failing multi: nothing is applied; the failed op has its error,
        // the ops after it RUNTIME_INCONSISTENCY.
        const failure = await withTimeout(new Promise((resolve) => {
            a.transaction()
                .check(base, 99)
                .create(`${base}/never`)
                .commit((error, res) => resolve({ error, res }));
        }), 'failing multi');
        check(failure.error && failure.error.getCode() === Exception.BAD_VERSION,
            `failing multi error ${failure.error}`);
        const errs = (failure.res || []).map((r) => r.err);
        check(JSON.stringify(errs) === JSON.stringify([Exception.BAD_VERSION, Exception.RUNTIME_INCONSISTENCY]),
            `per-op errors ${JSON.stringify(errs)}`);
        check(!(await call(b, 'exists', `${base}/never`)), 'a failed multi applied a create');
        return `types=${results.map((r) => r.type).join(',')} failed=${JSON.stringify(errs)}`;
    });

    await step('large-data', async () => {
        // Close to the 1 MB default jute.maxbuffer: frames arrive in many TCP segments.
        const big = Buffer.alloc(1000000);
        for (let i = 0; i < big.length; i += 1) {
            big[i] = (i * 7 + 3) % 251;
        }
        await call(a, 'create', `${base}/big`, big);
        const [data, stat] = await call(b, 'getData', `${base}/big`);
        check(stat.dataLength === big.length && data.equals(big), `read back ${data.length} bytes`);
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
            call(a, 'setData', `${base}/big`, big.subarray(0, 50000 + i), -1)));
        check(results.map((st) => st.version).join(',') === Array.from({ length: 20 }, (_, i) => i + 1).join(','),
            `pipelined setData versions ${results.map((st) => st.version)}`);
        await call(a, 'remove', `${base}/big`, -1);
        return `${big.length} bytes, 20 pipelined sets`;
    });

    await step('acl-mkdirp-delete', async () => {
        const [acls] = await call(a, 'getACL', base);
        check(acls.length === 1, `${acls.length} ACL entries`);
        const first = acls[0];
        check(first.permission === 31 && first.id.scheme === 'world' && first.id.id === 'anyone',
            `acl ${JSON.stringify(first)}`);
        const deep = await call(a, 'mkdirp', `${base}/m/n/o`);
        check(deep === `${base}/m/n/o`, `mkdirp ${deep}`);
        await expectError(a, 'NOT_EMPTY', 'remove', `${base}/m`, -1);
        await expectError(a, 'BAD_VERSION', 'remove', `${base}/m/n/o`, 5);
        await call(a, 'remove', `${base}/m/n/o`, 0);
        return `acl=${first.id.scheme}:${first.id.id}:${first.permission}`;
    });

    await step('acl-digest', async () => {
        const c = await connect('client C');
        c.addAuthInfo('digest', Buffer.from('alice:secret'));
        const secret = `${base}/secret`;
        await call(c, 'create', secret, Buffer.from('s'), ACL.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        const digest = `alice:${crypto.createHash('sha1').update('alice:secret').digest('base64')}`;
        const [acls] = await call(c, 'getACL', secret);
        check(acls.length === 1 && acls[0].permission === 31 && acls[0].id.scheme === 'digest'
            && acls[0].id.id === digest, `acl ${JSON.stringify(acls)}`);
        await expectError(b, 'NO_AUTH', 'getData', secret);
        await expectError(b, 'NO_AUTH', 'getACL', secret);
        await expectError(b, 'INVALID_ACL', 'create', `${base}/no-auth`, ACL.CREATOR_ALL_ACL);
        const [data] = await call(c, 'getData', secret);
        check(data.toString() === 's', `owner read ${data}`);
        const stat = await call(c, 'setACL', secret, ACL.READ_ACL_UNSAFE, 0);
        check(stat.aversion === 1, `aversion ${stat.aversion}`);
        const [data2] = await call(b, 'getData', secret);
        check(data2.toString() === 's', 'world cannot read a READ_ACL_UNSAFE node');
        await expectError(b, 'NO_AUTH', 'setData', secret, Buffer.from('x'), -1);
        await call(b, 'remove', secret, -1); // DELETE is checked on the parent
        c.close();
        return digest.slice(0, digest.indexOf(':'));
    });

    await step('session-close-removes-ephemerals', async () => {
        const w = watcher();
        check(await call(b, 'exists', `${base}/eph`, w), 'ephemeral missing before close');
        a.close();
        const event = await w.event('NODE_DELETED of the ephemeral after close');
        check(event.getType() === Event.NODE_DELETED && event.getPath() === `${base}/eph`, `event ${event}`);
        const [children] = await call(b, 'getChildren', base);
        check(!children.includes('eseq-0000000003'), `ephemeral sequential survived: ${children}`);
        return children.slice().sort().join(',');
    });

    await step('cleanup', async () => {
        // Depth first by hand: the client's removeRecursive lists only one level
        // of the tree with async 3 (NOT_EMPTY against Apache ZooKeeper too).
        const removeTree = async (path) => {
            const [children] = await call(b, 'getChildren', path);
            for (const child of children) {
                await removeTree(`${path}/${child}`);
            }
            await call(b, 'remove', path, -1);
        };
        await removeTree(base);
        check(!(await call(b, 'exists', base)), 'base still exists');
    });
}

main()
    .catch((error) => fail('main', error && error.stack ? error.stack : String(error)))
    .finally(() => {
        for (const client of clients) {
            try {
                client.close();
            } catch (e) {
                // already closed
            }
        }
        console.log(`DONE ${passed} ${failed}`);
        // close() queues closeSession; give it a moment, then exit regardless.
        setTimeout(() => process.exit(failed === 0 && passed > 0 ? 0 : 1), 300);
    });

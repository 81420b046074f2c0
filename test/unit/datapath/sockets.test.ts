// SPDX-License-Identifier: Apache-2.0
// src/datapath/sockets.ts fds adopted by node:dgram (`socket.bind({ fd })`), in a network namespace of this
// test's own (mbrtest-sock<pid>, lo only, deleted by name): a marked upstream socket (SO_MARK seen by `ss`),
// a transparent reply socket bound to a non-local address (the client sees that source), the transparent
// receiving socket. The sends happen in sockets-child.ts, run there with nsenter.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const ns = `mbrtest-sock${process.pid}`;
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function skipReason(): string | false {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('socket tests need root (CAP_NET_ADMIN) and CI=true: refusing to skip');
    return 'needs root (CAP_NET_ADMIN, network namespaces)';
  }
  return have('ip') && have('nsenter') && have('ss') ? false : 'needs ip, nsenter and ss (iproute2, util-linux)';
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe('proxy sockets adopted by node:dgram', { skip: skipReason() }, () => {
  let out: Record<string, any>;
  before(() => {
    run('ip', ['netns', 'add', ns]);
    run('nsenter', [`--net=/run/netns/${ns}`, 'ip', 'link', 'set', 'lo', 'up']);
    run('nsenter', [`--net=/run/netns/${ns}`, 'ip', 'addr', 'add', '10.250.0.2/32', 'dev', 'lo']);
    const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '--import', 'tsx', path.join(here, 'sockets-child.ts')],
      { cwd: root, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `child failed: ${r.stderr}`);
    out = JSON.parse(r.stdout);
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });

  test('markedDgramFd: unbound until the first send; its datagrams carry the mark; replies come back', () => {
    assert.deepEqual(out.upBeforeSend, { address: '0.0.0.0', family: 'IPv4', port: 0 });
    assert.equal(out.upToClient.text, 'query');
    assert.match(out.upToClient.from, /^10\.250\.0\.2:\d+$/);
    assert.equal(out.upFwmark, '0x3e90a00');
    assert.equal(out.clientToUp.text, 'answer');
  });

  test('transparentReplyFd: bound to a non-local address, which the client sees as the source', () => {
    assert.deepEqual(out.replyAddress, { address: '10.200.0.20', family: 'IPv4', port: 53 });
    assert.deepEqual(out.replyToClient, { text: 'reply', from: '10.200.0.20:53' });
    assert.deepEqual(out.reply2ToClient, { text: 'reply2', from: '10.200.0.20:53' }, 'a second socket on the same address (SO_REUSEADDR)');
  });

  test('DatagramSender: sendto from a transparent socket and send on a connected one, straight through libc', () => {
    assert.equal(out.rawSendTo, 'sent');
    assert.deepEqual(out.rawReplyToClient, { text: 'raw-reply', from: '10.200.0.21:5353' });
    assert.equal(out.rawSendToBadAddress, 'busy', 'not IPv4: left to node:dgram');
    assert.equal(out.rawSend, 'sent');
    assert.equal(out.rawSendGot, 'raw-query');
  });

  test("transparentListenFd({ type: 'udp' }): the proxy's receiving socket", () => {
    assert.equal(out.listenGot, 'to-proxy');
  });
});

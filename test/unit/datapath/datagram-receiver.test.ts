// SPDX-License-Identifier: Apache-2.0
/**
 * DatagramReceiver (src/datapath/sockets.ts): batch reads with recvmmsg on loopback sockets that
 * node:dgram owns, as the DNS proxy uses it (no privilege needed). Each test sends and reads in one
 * synchronous stretch (DatagramSender, then receive), so node:dgram's own reading never gets a
 * turn in between.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { DatagramReceiver, DatagramSender, setReceiveOrigDst } from '../../../src/datapath/sockets.ts';

/** The fd of a bound node:dgram socket (what the proxy has from the sockets it makes itself). */
const fdOf = (s: dgram.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

async function bound(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

function sendAll(from: dgram.Socket, to: number, payloads: Buffer[]): void {
  const tx = new DatagramSender(fdOf(from));
  for (const p of payloads) assert.equal(tx.sendTo(p, '127.0.0.1', to), 'sent');
}

/** receive(), retried for a moment while it returns 0 (loopback delivers during the send, almost always). */
function receiveSoon(r: DatagramReceiver, fd: number): number {
  const until = performance.now() + 200;
  for (;;) {
    const n = r.receive(fd);
    if (n !== 0 || performance.now() > until) return n;
  }
}

describe('DatagramReceiver', () => {
  test('reads what waits in batches of at most `slots`, with each source and destination, then 0', async () => {
    const rx = await bound();
    const tx = await bound();
    const port = rx.address().port;
    setReceiveOrigDst(fdOf(rx));
    const r = new DatagramReceiver(4, 2048);
    const payloads = Array.from({ length: 6 }, (_, i) => Buffer.from(`datagram-${i}-${'x'.repeat(i * 100)}`));
    sendAll(tx, port, payloads);
    const got: Buffer[] = [];
    let n = receiveSoon(r, fdOf(rx));
    assert.equal(n, 4, 'the first batch fills every slot');
    for (let i = 0; i < n; i++) {
      got.push(r.data(i));
      assert.equal(r.sourceIp(i), '127.0.0.1');
      assert.equal(r.sourcePort(i), tx.address().port);
      assert.deepEqual(r.origDst(i), { ip: '127.0.0.1', port });
      assert.equal(r.truncated(i), false);
    }
    n = r.receive(fdOf(rx));
    assert.equal(n, 2);
    for (let i = 0; i < n; i++) got.push(r.data(i));
    assert.deepEqual(got, payloads, 'bytes and order kept; copies outlive the next read');
    assert.equal(r.receive(fdOf(rx)), 0, 'nothing waiting: 0, not an error');
    assert.equal(r.received, 6);
    rx.close();
    tx.close();
  });

  test('no IP_RECVORIGDSTADDR: no destination; a datagram longer than its slot is marked truncated', async () => {
    const rx = await bound();
    const tx = await bound();
    const r = new DatagramReceiver(2, 8);
    sendAll(tx, rx.address().port, [Buffer.from('0123456789abcdef'), Buffer.from('short')]);
    assert.equal(receiveSoon(r, fdOf(rx)), 2);
    assert.equal(r.truncated(0), true);
    assert.equal(r.data(0).toString(), '01234567');
    assert.equal(r.origDst(0), null);
    assert.equal(r.truncated(1), false, 'each slot gets its flags afresh');
    assert.equal(r.data(1).toString(), 'short');
    rx.close();
    tx.close();
  });

  test('an ICMP error on a connected socket comes back as a negative errno (ECONNREFUSED)', async () => {
    const gone = await bound();
    const port = gone.address().port;
    await new Promise<void>((r) => gone.close(r)); // nobody listens there any more
    const s = await bound();
    await new Promise<void>((r) => s.connect(port, '127.0.0.1', r));
    s.on('error', () => {});
    assert.equal(new DatagramSender(fdOf(s)).send(Buffer.from('q')), 'sent');
    const r = new DatagramReceiver(2, 64);
    assert.equal(receiveSoon(r, fdOf(s)), -111);
    s.close();
  });
});

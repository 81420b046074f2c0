// SPDX-License-Identifier: Apache-2.0
// Child of sockets.test.ts, run inside that test's network namespace (nsenter), where 10.250.0.2 is on lo:
// adopts the fds of src/datapath/sockets.ts into node:dgram sockets, sends from them, and prints one JSON
// object with what a client saw. Not a test file itself.
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { DatagramSender, markedDgramFd, transparentListenFd, transparentReplyFd } from '../../../src/datapath/sockets.ts';

const MARK = 0x03e90a00;
const CLIENT = '10.250.0.2';

function received(s: dgram.Socket): Promise<{ text: string; from: string }> {
  return new Promise((resolve) => s.once('message', (msg, r) => resolve({ text: msg.toString(), from: `${r.address}:${r.port}` })));
}

/** Adopts an fd; 'listening' is emitted during bind({ fd }), so the callback is the way to wait for it. */
function adopt(fd: number): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => s.bind({ fd }, () => resolve(s)));
}

const client = dgram.createSocket('udp4');
await new Promise<void>((r) => client.bind(0, CLIENT, r));
const clientPort = client.address().port;
const out: Record<string, unknown> = {};

// markedDgramFd: unbound until the first send, then every datagram carries the mark; replies come back.
const up = await adopt(markedDgramFd(MARK));
out.upBeforeSend = up.address();
let got = received(client);
up.send('query', clientPort, CLIENT);
const q = await got;
const upPort = Number(q.from.split(':')[1]);
out.upToClient = q;
const ss = execFileSync('ss', ['-uane', 'sport', '=', `:${upPort}`], { encoding: 'utf8' });
out.upFwmark = /fwmark:(0x[0-9a-f]+)/.exec(ss)?.[1] ?? null;
got = received(up);
client.send('answer', upPort, CLIENT);
out.clientToUp = await got;

// transparentReplyFd: bound to an address the namespace does not have; the client sees it as the source.
const reply = await adopt(transparentReplyFd('10.200.0.20', 53));
out.replyAddress = reply.address();
got = received(client);
reply.send('reply', clientPort, CLIENT);
out.replyToClient = await got;
const reply2 = await adopt(transparentReplyFd('10.200.0.20', 53));
got = received(client);
reply2.send('reply2', clientPort, CLIENT);
out.reply2ToClient = await got;

// DatagramSender: sendto on a transparent reply fd (source as above), send on a connected marked fd.
const rawFd = transparentReplyFd('10.200.0.21', 5353);
const raw = await adopt(rawFd);
got = received(client);
out.rawSendTo = new DatagramSender(rawFd).sendTo(Buffer.from('raw-reply'), CLIENT, clientPort);
out.rawReplyToClient = await got;
out.rawSendToBadAddress = new DatagramSender(rawFd).sendTo(Buffer.from('x'), 'not-an-ip', clientPort);
const connFd = markedDgramFd(MARK);
const conn = await adopt(connFd);
await new Promise<void>((r) => conn.connect(clientPort, CLIENT, r));
got = received(client);
out.rawSend = new DatagramSender(connFd).send(Buffer.from('raw-query'));
out.rawSendGot = (await got).text;

// transparentListenFd({ type: 'udp' }): the proxy's receiving socket.
const listen = await adopt(transparentListenFd('127.0.0.1', 0, { type: 'udp' }));
const listenPort = listen.address().port;
got = received(listen);
client.send('to-proxy', listenPort, '127.0.0.1');
out.listenGot = (await got).text;

for (const s of [client, up, reply, reply2, listen, raw, conn]) s.close();
process.stdout.write(JSON.stringify(out) + '\n');

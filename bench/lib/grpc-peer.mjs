// SPDX-License-Identifier: Apache-2.0
/* global process, console */
/**
 * gRPC peer of bench/http.ts (the shop.Catalog service of test/peers/fixtures/shop.proto), run
 * inside a pod namespace with plain `node` (no tsx: it starts in ~150 ms).
 *
 *   node bench/lib/grpc-peer.mjs server HOST:PORT [HOST:PORT ...]
 *       serves GetItem and DeleteItem (unary) on each address; prints {"ready":[...]} once bound.
 *   node bench/lib/grpc-peer.mjs call HOST:PORT METHOD ID
 *       one unary call with a 3 s deadline; prints {"ok":true,"item":{...}} or {"ok":false,"code":N,"details":"..."}.
 *
 * The benchmark's h2load request body is the same ItemRequest {id: "42"} framed by hand
 * (see grpcFrame in bench/http.ts), so the server answers it like the grpc-js client's call.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO = path.join(here, '..', '..', 'test', 'peers', 'fixtures', 'shop.proto');
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
const shop = /** @type {any} */ (grpc.loadPackageDefinition(definition)).shop;

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server') {
  const server = new grpc.Server();
  const item = (call, cb) => cb(null, { id: call.request.id, name: `item-${call.request.id}` });
  const unimplemented = (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not in the benchmark' });
  server.addService(shop.Catalog.service, {
    GetItem: item,
    DeleteItem: item,
    ListItems: unimplemented,
    Chat: unimplemented,
    Upload: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in the benchmark' }),
    Hang: () => undefined,
  });
  const bound = [];
  for (const addr of args) {
    await new Promise((resolve, reject) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    bound.push(addr);
  }
  console.log(JSON.stringify({ ready: bound }));
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
} else if (mode === 'call') {
  const [addr, method, id] = args;
  const client = new shop.Catalog(addr, grpc.credentials.createInsecure());
  client[method]({ id }, { deadline: Date.now() + 3000 }, (err, res) => {
    console.log(JSON.stringify(err ? { ok: false, code: err.code, details: err.details } : { ok: true, item: res }));
    client.close();
  });
} else {
  console.error('usage: grpc-peer.mjs server HOST:PORT... | call HOST:PORT METHOD ID');
  process.exit(2);
}

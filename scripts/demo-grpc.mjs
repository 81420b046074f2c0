// SPDX-License-Identifier: Apache-2.0
// gRPC peer of `npm run demo` (shop.Catalog from test/peers/fixtures/shop.proto), run inside a
// pod namespace:  demo-grpc.mjs server PORT  |  demo-grpc.mjs call HOST:PORT METHOD
// `call` prints one JSON line: {"method", "ok", "code", "details"}.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const def = protoLoader.loadSync(path.join(root, 'test', 'peers', 'fixtures', 'shop.proto'), { keepCase: true });
const shop = grpc.loadPackageDefinition(def).shop;
const [mode, where, method] = process.argv.slice(2);

if (mode === 'server') {
  const server = new grpc.Server();
  const item = (call, cb) => cb(null, { id: call.request.id, name: `item ${call.request.id}` });
  server.addService(shop.Catalog.service, { GetItem: item, DeleteItem: item, ListItems: (call) => call.end(), Chat: (call) => call.end() });
  server.bindAsync(`0.0.0.0:${where}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
    process.stdout.write('{"ready":true}\n');
  });
} else {
  const client = new shop.Catalog(where, grpc.credentials.createInsecure());
  client[method]({ id: '42' }, { deadline: Date.now() + 2000 }, (err) => {
    process.stdout.write(JSON.stringify({ method, ok: !err, code: err ? err.code : 0, details: err ? err.details : '' }) + '\n');
    client.close();
  });
}

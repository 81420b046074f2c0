// SPDX-License-Identifier: Apache-2.0
// src/datapath/sched.ts: the calling thread's scheduler slice, set and read back (no privilege
// needed; the value is honoured from Linux 6.12, EEVDF custom slices).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { setThreadSlice, threadSlice } from '../../../src/datapath/sched.ts';

const [major = 0, minor = 0] = os.release().split('.').map(Number);
const customSlices = major > 6 || (major === 6 && minor >= 12);

test('setThreadSlice: the thread keeps its nice value and, from 6.12, reports the slice; 0 restores the default', { skip: customSlices ? false : `kernel ${os.release()} has no custom slices (6.12+)` }, () => {
  const nice = os.getPriority();
  const before = threadSlice();
  setThreadSlice(200_000);
  try {
    assert.equal(threadSlice(), 200_000);
    assert.equal(os.getPriority(), nice);
  } finally {
    setThreadSlice(0);
  }
  assert.equal(threadSlice(), before);
});

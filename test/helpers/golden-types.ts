// SPDX-License-Identifier: Apache-2.0
export { isSyntheticOrigin, protoName } from '../../src/policy/types.ts';
export type { KeyedEntry as KeyedEntryLike } from '../../src/policy/map-state.ts';

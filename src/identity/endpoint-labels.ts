// SPDX-License-Identifier: Apache-2.0
/**
 * @module identity/endpoint-labels
 *
 * The identity-relevant labels of a pod (reference §2.1, labelsfilter): its Kubernetes labels
 * with source `k8s`, minus the ones Cilium filters out, plus the pod namespace, the namespace's
 * labels as `io.cilium.k8s.namespace.labels.*`, and the cluster name.
 */
import { LabelSet, type Label } from '../labels/labels.ts';

export const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';
export const SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
export const DEFAULT_CLUSTER = 'default';

/** Kubernetes-internal label keys that never become identity labels (labelsfilter). */
const FILTERED: RegExp[] = [
  /^io\.kubernetes/,
  /^kubernetes\.io/,
  /^pod-template-generation$/,
  /^pod-template-hash$/,
  /^controller-revision-hash$/,
  /^controller-uid$/,
  /^statefulset\.kubernetes\.io\/pod-name$/,
  /^batch\.kubernetes\.io\/(job-completion-index|controller-uid)$/,
  /^job-name$/,
  /\.beta\.kubernetes\.io/,
  /^k8s\.io/,
  /^topology\.kubernetes\.io/,
  /^annotation\./,
  /^io\.cilium\.k8s\.policy\.(cluster|serviceaccount)$/,
];

/** True when a pod label key is kept as an identity label. */
export function isIdentityLabel(key: string): boolean {
  return !FILTERED.some((r) => r.test(key));
}

/**
 * Builds the identity label set of a pod.
 * @param podLabels the pod's Kubernetes labels
 * @param namespace the pod's namespace
 * @param namespaceLabels the namespace's labels; `kubernetes.io/metadata.name` is always added (DESIGN §2)
 * @param serviceAccount optional service account name
 * @returns the identity labels
 */
export function endpointIdentityLabels(
  podLabels: Record<string, string>,
  namespace: string,
  namespaceLabels: Record<string, string> = {},
  serviceAccount?: string,
): LabelSet {
  const out: Label[] = [];
  for (const [k, v] of Object.entries(podLabels)) {
    if (k === SERVICE_ACCOUNT_LABEL) out.push({ source: 'k8s', key: k, value: v });
    else if (isIdentityLabel(k)) out.push({ source: 'k8s', key: k, value: v });
  }
  out.push({ source: 'k8s', key: NAMESPACE_LABEL, value: namespace });
  const nsLabels = { ...namespaceLabels, 'kubernetes.io/metadata.name': namespace };
  for (const [k, v] of Object.entries(nsLabels)) out.push({ source: 'k8s', key: NAMESPACE_LABELS_PREFIX + k, value: v });
  out.push({ source: 'k8s', key: CLUSTER_LABEL, value: DEFAULT_CLUSTER });
  if (serviceAccount) out.push({ source: 'k8s', key: SERVICE_ACCOUNT_LABEL, value: serviceAccount });
  return new LabelSet(out);
}

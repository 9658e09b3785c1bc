import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import * as nodePackage from '@gridlink/node';
import { LocalCluster, NODE_V8_FLAGS } from '@gridlink/node';
import { parsePrometheus } from '@gridlink/admin';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = `${root}deploy/kubernetes/`;

type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown };
const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

const manifestFiles = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const objects: { file: string; obj: Obj }[] = manifestFiles.flatMap((file) =>
  parseAllDocuments(readFileSync(dir + file, 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return { file, obj: d.toJS() as Obj };
  }),
);
const find = (kind: string, name?: string): Obj => {
  const o = objects.find((x) => x.obj.kind === kind && (name === undefined || x.obj.metadata.name === name));
  if (!o) throw new Error(`no ${kind} ${name ?? ''}`);
  return o.obj;
};

interface Probe { httpGet: { path: string; port: string | number } }
interface Container {
  name: string;
  args?: string[];
  ports: { name: string; containerPort: number }[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { configMapRef: { name: string } }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  startupProbe: Probe;
}
const sts = find('StatefulSet') as unknown as {
  spec: {
    replicas: number;
    serviceName: string;
    podManagementPolicy: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { terminationGracePeriodSeconds: number; containers: Container[]; topologySpreadConstraints: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[] } };
  };
};
const pod = sts.spec.template;
const container = pod.spec.containers[0]!;
const portOf = (name: string | number): number => (typeof name === 'number' ? name : container.ports.find((p) => p.name === name)!.containerPort);
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The container's environment as the kubelet hands it to the process, for pod gridlink-0 in zone-a. */
function podEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ref of container.envFrom ?? []) Object.assign(env, (find('ConfigMap', ref.configMapRef.name) as unknown as { data: Record<string, string> }).data);
  const fields: Record<string, string> = {
    'metadata.name': 'gridlink-0',
    'metadata.namespace': 'default',
    "metadata.labels['topology.kubernetes.io/zone']": 'zone-a',
  };
  for (const e of container.env) {
    if (e.valueFrom?.fieldRef) {
      const v = fields[e.valueFrom.fieldRef.fieldPath];
      if (v === undefined) throw new Error(`test knows no value for field ${e.valueFrom.fieldRef.fieldPath}`);
      env[e.name] = v;
    } else {
      env[e.name] = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
    }
  }
  return env;
}

/**
 * Flags gridlink-node documents (its --help), used only when this @gridlink/node does not export
 * its option parser `parseCli`: each GRIDLINK_X variable is the flag --x.
 */
const DOCUMENTED_FLAGS = [
  'id', 'host', 'port', 'advertise-host', 'http-port', 'zone', 'cluster-id', 'partitions', 'backups', 'bootstrap-nodes',
  'control-plane', 'bucket', 'bucket-replicas', 'max-entries', 'max-bytes', 'auth-token', 'log-level',
];

describe('Kubernetes manifests', () => {
  let cluster: LocalCluster;
  let http: string;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, partitions: 8, http: true });
    http = `http://127.0.0.1:${cluster.node('node-1').httpPort}`;
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('every object validates against its Kubernetes schema, and the kustomization lists them all', () => {
    expect(objects.length).toBeGreaterThanOrEqual(6);
    for (const { file, obj } of objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `${file}: ${obj.apiVersion} ${obj.kind} has no schema in this test`).toBeDefined();
      expect(() => new Model!(obj as never).validate(), `${file}: ${obj.kind} ${obj.metadata.name}`).not.toThrow();
    }
    const k = parseAllDocuments(readFileSync(dir + 'kustomization.yaml', 'utf8'))[0]!.toJS() as { resources: string[]; configMapGenerator: { files: string[] }[] };
    expect([...k.resources].sort()).toEqual(manifestFiles);
    for (const g of k.configMapGenerator) for (const f of g.files) expect(() => readFileSync(dir + f)).not.toThrow();
  });

  it('a StatefulSet of 3 started in parallel, spread across zones, with a grace period for the handoff', () => {
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(matches(sts.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
    const zone = pod.spec.topologySpreadConstraints.find((c) => c.topologyKey === 'topology.kubernetes.io/zone');
    expect(zone && matches(zone.labelSelector.matchLabels, pod.metadata.labels)).toBe(true);
    const zoneEnv = container.env.find((e) => e.name === 'GRIDLINK_ZONE');
    expect(zoneEnv?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.labels['topology.kubernetes.io/zone']");
  });

  it('services: a headless one publishing not-ready pods for peers, a client one; both select the pods', () => {
    const peers = find('Service', sts.spec.serviceName) as unknown as { spec: { clusterIP: string; publishNotReadyAddresses: boolean; selector: Record<string, string>; ports: { targetPort: string }[] } };
    expect(peers.spec.clusterIP).toBe('None');
    expect(peers.spec.publishNotReadyAddresses).toBe(true);
    const client = find('Service', 'gridlink') as unknown as { spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] } };
    expect(client.spec.ports.map((p) => p.port)).toEqual([10800]);
    for (const s of [peers, client]) {
      expect(matches(s.spec.selector, pod.metadata.labels)).toBe(true);
      for (const p of s.spec.ports) expect(container.ports.map((c) => c.name)).toContain(p.targetPort);
    }
    const pdb = find('PodDisruptionBudget') as unknown as { spec: { maxUnavailable: number; selector: { matchLabels: Record<string, string> } } };
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(matches(pdb.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
  });

  it("the container's arguments and GRIDLINK_* variables are accepted by the node's option parser", () => {
    const env = podEnvironment();
    const args = container.args ?? [];
    const parseCli = (nodePackage as Record<string, unknown>)['parseCli'];
    const clientPort = portOf('client');
    const httpPort = portOf('http');
    if (typeof parseCli === 'function') {
      const r = (parseCli as (a: string[], e: Record<string, string>, h: string) => { help: boolean; config: Record<string, unknown> })(args, env, 'gridlink-0');
      expect(r.help).toBe(false);
      expect(r.config).toMatchObject({
        id: 'gridlink-0',
        host: '0.0.0.0',
        port: clientPort,
        httpPort,
        advertiseHost: 'gridlink-0.gridlink-peers.default.svc.cluster.local',
        zone: 'zone-a',
        controlPlane: { kind: 'nats' },
      });
      // No variable the node would warn of as no flag's (a misspelling it would ignore).
      const unknownVariables = (nodePackage as Record<string, unknown>)['unknownVariables'];
      if (typeof unknownVariables === 'function') expect((unknownVariables as (e: Record<string, string>) => unknown[])(env)).toEqual([]);
    } else {
      for (const name of Object.keys(env).filter((n) => n.startsWith('GRIDLINK_'))) {
        expect(DOCUMENTED_FLAGS, name).toContain(name.slice('GRIDLINK_'.length).toLowerCase().replace(/_/g, '-'));
      }
      for (const a of args.filter((x) => x.startsWith('--'))) expect(DOCUMENTED_FLAGS, a).toContain(a.slice(2).split('=')[0]);
      expect(Number(env['GRIDLINK_PORT'])).toBe(clientPort);
      expect(Number(env['GRIDLINK_HTTP_PORT'])).toBe(httpPort);
      expect(env['GRIDLINK_ID']).toBe('gridlink-0');
      expect(env['GRIDLINK_ADVERTISE_HOST']).toBe('gridlink-0.gridlink-peers.default.svc.cluster.local');
      expect(env['GRIDLINK_CONTROL_PLANE']).toMatch(/^nats:\/\//);
    }
    expect(clientPort).toBe(10800);
  });

  it('probes and the ServiceMonitor use paths the node serves, on its HTTP port', async () => {
    const probes = [container.startupProbe, container.livenessProbe, container.readinessProbe];
    expect(container.readinessProbe.httpGet.path).toBe('/health/ready');
    expect(container.livenessProbe.httpGet.path).toBe('/health/live');
    const monitor = find('ServiceMonitor') as unknown as { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } };
    const peers = find('Service', sts.spec.serviceName) as unknown as { metadata: { labels: Record<string, string> }; spec: { ports: { name: string; targetPort: string }[] } };
    expect(matches(monitor.spec.selector.matchLabels, peers.metadata.labels)).toBe(true);
    for (const p of probes) expect(portOf(p.httpGet.port)).toBe(portOf('http'));
    for (const e of monitor.spec.endpoints) expect(peers.spec.ports.find((p) => p.name === e.port)?.targetPort).toBe('http');
    // Ask a real node for every path.
    for (const path of [...probes.map((p) => p.httpGet.path), ...monitor.spec.endpoints.map((e) => e.path)]) {
      const res = await fetch(http + path);
      expect(res.status, path).toBe(200);
      await res.text();
    }
  });

  it('the Grafana dashboard queries only metrics a node exports', async () => {
    const dash = JSON.parse(readFileSync(dir + 'grafana-dashboard.json', 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const text = await (await fetch(`${http}/metrics`)).text();
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const series = new Set(parsePrometheus(text).map((s) => s.name));
    let checked = 0;
    for (const p of dash.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) {
        for (const [name] of t.expr.matchAll(/gridlink_[a-z0-9_]+/g)) {
          // Histogram series (_bucket, _sum, _count) appear once observed; their family is always declared.
          const family = name.replace(/_(bucket|sum|count)$/, '');
          expect(families.has(name) || series.has(name) || (family !== name && families.has(family)), `${p.title}: ${name}`).toBe(true);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('the Dockerfile runs the gridlink-node bin in exec form with the node\'s V8 flags, exposes its ports and fetches nothing but packages', () => {
    const text = readFileSync(`${root}deploy/docker/Dockerfile`, 'utf8');
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(text);
    expect(entry).not.toBeNull();
    const argv = JSON.parse(entry![1]!) as string[];
    const bin = (JSON.parse(readFileSync(`${root}packages/node/package.json`, 'utf8')) as { bin: Record<string, string> }).bin['gridlink-node']!;
    expect(argv).toEqual(['node', ...NODE_V8_FLAGS, `/app/${bin.replace(/^\.\//, '')}`]);
    const exposed = /^EXPOSE (.*)$/m.exec(text)![1]!.split(/\s+/).map(Number);
    expect(exposed).toEqual(expect.arrayContaining([portOf('client'), portOf('http')]));
    for (const run of text.match(/^RUN .*(\n .*)*/gm) ?? []) expect(run).not.toMatch(/\b(curl|wget|git|apt-get|apk)\b/);
  });
});

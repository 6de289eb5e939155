/**
 * deploy/kubernetes: parses every manifest and checks kinds and apiVersions,
 * selectors that select what they mean to, anti-affinity between the pair,
 * probes on routes and ports the daemon has (src/contract.ts), container
 * command lines against the daemon's own option parser (src/cli/specs.ts)
 * with the ConfigMap as environment, secrets mounted where the flags read
 * them, the NetworkPolicy, the PodMonitor and the PrometheusRule (equal to
 * deploy/prometheus/rules). Where kubectl exists, `kubectl kustomize` renders
 * both kustomizations.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { DEFAULT_PORTS, HEALTH_PATH, METRICS_PATH, READY_PATH } from "../../src/contract.js";
import {
  arr,
  DEPLOY,
  envNamesOf,
  hostPort,
  obj,
  parseCommandLine,
  readText,
  readYaml,
  readYamlDocs,
  str,
} from "./lib.js";

const K8S = "deploy/kubernetes";

type Obj = Record<string, unknown>;
interface Manifest {
  readonly file: string;
  readonly kind: string;
  readonly apiVersion: string;
  readonly name: string;
  readonly doc: Obj;
}

const API_VERSIONS: Record<string, string> = {
  Namespace: "v1",
  ConfigMap: "v1",
  Service: "v1",
  Pod: "v1",
  Deployment: "apps/v1",
  NetworkPolicy: "networking.k8s.io/v1",
  PodDisruptionBudget: "policy/v1",
  PodMonitor: "monitoring.coreos.com/v1",
  PrometheusRule: "monitoring.coreos.com/v1",
};

function kustomization(dir: string): Obj {
  return obj(readYaml(`${dir}/kustomization.yaml`), `${dir}/kustomization.yaml`);
}

function load(dir: string): Manifest[] {
  const k = kustomization(dir);
  return arr(k.resources, "resources").flatMap((r) =>
    readYamlDocs(`${dir}/${str(r, "resource")}`).map((d) => {
      const doc = obj(d, r as string);
      const meta = obj(doc.metadata, `${r} metadata`);
      return {
        file: `${dir}/${r}`,
        kind: str(doc.kind, "kind"),
        apiVersion: str(doc.apiVersion, "apiVersion"),
        name: str(meta.name, "name"),
        doc,
      };
    }),
  );
}

const core = load(K8S);
const monitoring = load(`${K8S}/monitoring`);
const all = [...core, ...monitoring];

function find(kind: string, name: string): Obj {
  const m = all.find((x) => x.kind === kind && x.name === name);
  assert.ok(m, `${kind} ${name}`);
  return m.doc;
}

interface PodLike {
  readonly owner: string;
  readonly labels: Record<string, string>;
  readonly spec: Obj;
}

/** Every pod the manifests make: bare Pods and Deployment templates. */
const pods: PodLike[] = core.flatMap((m): PodLike[] => {
  if (m.kind === "Pod") {
    return [{ owner: `Pod ${m.name}`, labels: labelsOf(m.doc), spec: obj(m.doc.spec, "spec") }];
  }
  if (m.kind === "Deployment") {
    const t = obj(obj(m.doc.spec, "spec").template, "template");
    return [{ owner: `Deployment ${m.name}`, labels: labelsOf(t), spec: obj(t.spec, "template.spec") }];
  }
  return [];
});

function labelsOf(o: Obj): Record<string, string> {
  return obj(obj(o.metadata, "metadata").labels ?? {}, "labels") as Record<string, string>;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

function matchLabels(sel: unknown, what: string): Record<string, string> {
  const s = obj(sel, what);
  assert.equal(s.matchExpressions, undefined, `${what}: only matchLabels is used`);
  return obj(s.matchLabels, `${what}.matchLabels`) as Record<string, string>;
}

function pod(component: string): PodLike {
  const p = pods.find((x) => x.labels["app.kubernetes.io/component"] === component);
  assert.ok(p, `a ${component} pod`);
  return p;
}

function container(p: PodLike): Obj {
  const cs = arr(p.spec.containers, "containers");
  assert.equal(cs.length, 1, `${p.owner}: one container`);
  return obj(cs[0], "container");
}

function ports(c: Obj): { name: string; containerPort: number; protocol: string }[] {
  return arr(c.ports ?? [], "ports").map((x) => {
    const p = obj(x, "port");
    return {
      name: str(p.name, "port name"),
      containerPort: Number(p.containerPort),
      protocol: String(p.protocol ?? "TCP"),
    };
  });
}

const configMap = obj(find("ConfigMap", "remusd-config").data, "configmap data") as Record<string, string>;

/** The daemon's parsed command line, with the ConfigMap it imports as environment. */
function commandOf(p: PodLike): ReturnType<typeof parseCommandLine> {
  const c = container(p);
  const args = arr(c.args, `${p.owner} args`).map(String);
  const command = args[0] as string;
  let env: Record<string, string> = {};
  for (const e of arr(c.envFrom ?? [], "envFrom")) {
    const ref = obj(obj(e, "envFrom").configMapRef, "configMapRef");
    assert.equal(ref.name, "remusd-config", `${p.owner} imports remusd-config`);
    // An option only the other role has is ignored by this one, as the daemon does.
    const own = envNamesOf(command);
    env = { ...env, ...Object.fromEntries(Object.entries(configMap).filter(([k]) => own.has(k))) };
  }
  return parseCommandLine(args, env);
}

describe("Kubernetes manifests", () => {
  test("every manifest file is part of a kustomization, with known kinds and apiVersions", () => {
    for (const dir of [K8S, `${K8S}/monitoring`]) {
      const listed = new Set(arr(kustomization(dir).resources, "resources").map(String));
      const files = readdirSync(join(DEPLOY, dir.slice("deploy/".length))).filter(
        (f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml",
      );
      assert.deepEqual(new Set(files), listed, `${dir}: every manifest is listed in kustomization.yaml`);
    }
    for (const m of all) {
      assert.equal(m.apiVersion, API_VERSIONS[m.kind], `${m.file}: ${m.kind} apiVersion`);
      assert.match(m.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${m.file}: DNS-1123 name`);
    }
    for (const k of ["Pod", "Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"]) {
      assert.ok(
        core.some((m) => m.kind === k),
        k,
      );
    }
    for (const k of ["PodMonitor", "PrometheusRule"]) {
      assert.ok(
        monitoring.some((m) => m.kind === k),
        k,
      );
    }
    assert.equal(kustomization(K8S).namespace, kustomization(`${K8S}/monitoring`).namespace, "one namespace");
  });

  test("the primary is a bare Pod nothing restarts; the backup a one-replica Deployment", () => {
    const primary = core.find(
      (m) => m.kind === "Pod" && labelsOf(m.doc)["app.kubernetes.io/component"] === "primary",
    );
    assert.ok(primary, "the primary is a Pod (no controller recreates it)");
    assert.equal(obj(primary.doc.spec, "spec").restartPolicy, "Never", "a dead primary stays dead");
    const backup = core.find((m) => m.kind === "Deployment" && m.name === "remusd-backup");
    assert.ok(backup);
    const spec = obj(backup.doc.spec, "spec");
    assert.equal(spec.replicas, 1);
    assert.equal(obj(spec.strategy, "strategy").type, "Recreate", "never two backups at once");
    for (const m of core.filter((x) => x.kind === "Deployment")) {
      const s = obj(m.doc.spec, "spec");
      const sel = matchLabels(s.selector, `${m.name}.selector`);
      assert.ok(
        matches(sel, labelsOf(obj(s.template, "template"))),
        `${m.name}: the selector matches its template`,
      );
    }
  });

  test("the primary and the backup never share a node", () => {
    const p = pod("primary");
    const b = pod("backup");
    for (const [self, other] of [
      [p, b],
      [b, p],
    ] as const) {
      const anti = obj(obj(self.spec.affinity, "affinity").podAntiAffinity, "podAntiAffinity");
      const terms = arr(
        anti.requiredDuringSchedulingIgnoredDuringExecution,
        `${self.owner}: required anti-affinity`,
      );
      assert.ok(
        terms.some((t) => {
          const term = obj(t, "term");
          return (
            term.topologyKey === "kubernetes.io/hostname" &&
            matches(matchLabels(term.labelSelector, "labelSelector"), other.labels)
          );
        }),
        `${self.owner} refuses nodes that run ${other.owner}`,
      );
    }
  });

  test("container command lines parse with the daemon's options; ConfigMap keys are options", () => {
    for (const k of Object.keys(configMap)) {
      assert.ok(
        envNamesOf("primary").has(k) || envNamesOf("backup").has(k),
        `ConfigMap key ${k} is an option of remusd primary or backup`,
      );
    }
    const p = commandOf(pod("primary"));
    const b = commandOf(pod("backup"));
    assert.equal(p.command, "primary");
    assert.equal(b.command, "backup");
    for (const v of [p.values, b.values]) {
      assert.deepEqual(hostPort(v.control), { host: "0.0.0.0", port: DEFAULT_PORTS.control });
      assert.notEqual(v.insecure, true);
      assert.notEqual(v["no-netbuf"], true);
    }
    for (const k of ["domain-mib", "disk-mib", "heartbeat-ms", "heartbeat-misses", "switch"]) {
      assert.equal(p.values[k], b.values[k], `the pair agrees on --${k}`);
    }
    const vs = pods.find((x) => x.labels["app.kubernetes.io/component"] === "vswitch");
    assert.ok(vs, "a vswitch");
    const vsCmd = parseCommandLine(arr(container(vs).args, "vswitch args").map(String));
    assert.equal(vsCmd.command, "vswitch");
    const sw = hostPort(p.values.switch);
    const vsSvc = obj(find("Service", sw.host).spec, "vswitch service");
    assert.ok(
      matches(vsSvc.selector as Record<string, string>, vs.labels),
      "REMUSD_SWITCH names the vswitch Service",
    );
    const vsPort = arr(vsSvc.ports, "ports")
      .map((x) => obj(x, "port"))
      .find((x) => Number(x.port) === sw.port);
    assert.ok(vsPort && vsPort.protocol === "UDP", "the vswitch Service has the switch port, UDP");
    assert.equal(hostPort(vsCmd.values.listen).port, DEFAULT_PORTS.vswitch);
  });

  test("the primary dials a Service that reaches the backup before it is ready", () => {
    const p = commandOf(pod("primary"));
    const b = commandOf(pod("backup"));
    const peer = new URL(str(p.values.peer, "--peer"));
    const svc = obj(find("Service", peer.hostname).spec, `Service ${peer.hostname}`);
    const bPod = pod("backup");
    assert.ok(matches(svc.selector as Record<string, string>, bPod.labels), "it selects the backup");
    assert.ok(!matches(svc.selector as Record<string, string>, pod("primary").labels), "and not the primary");
    // The backup turns ready only after the primary synced it through this Service.
    assert.equal(svc.publishNotReadyAddresses, true, "it publishes the backup before it is ready");
    const sp = arr(svc.ports, "ports")
      .map((x) => obj(x, "port"))
      .find((x) => Number(x.port) === Number(peer.port));
    assert.ok(sp, `the Service has port ${peer.port}`);
    const target = ports(container(bPod)).find(
      (x) => x.name === sp.targetPort || x.containerPort === sp.targetPort,
    );
    assert.ok(target, "its targetPort is a backup container port");
    assert.equal(target.containerPort, hostPort(b.values.listen).port, "the port the backup listens on");
    assert.equal(target.containerPort, DEFAULT_PORTS.replication);
  });

  test("Services select pods and target ports that exist", () => {
    for (const m of core.filter((x) => x.kind === "Service")) {
      const spec = obj(m.doc.spec, "spec");
      const sel = spec.selector as Record<string, string>;
      const selected = pods.filter((p) => matches(sel, p.labels));
      assert.equal(selected.length, 1, `Service ${m.name} selects exactly one workload`);
      const c = container(selected[0] as PodLike);
      for (const x of arr(spec.ports, "ports")) {
        const sp = obj(x, "port");
        const cp = ports(c).find((p) => p.name === sp.targetPort);
        assert.ok(cp, `Service ${m.name}: targetPort ${sp.targetPort} is a named container port`);
        assert.equal(String(sp.protocol ?? "TCP"), cp.protocol, `Service ${m.name}: protocol`);
        assert.equal(
          Number(sp.port),
          cp.containerPort,
          `Service ${m.name}: same port number outside and inside`,
        );
      }
    }
  });

  test("probes: readiness on /readyz and liveness on /healthz, on the control port", () => {
    for (const component of ["primary", "backup"]) {
      const p = pod(component);
      const c = container(p);
      const control = hostPort(commandOf(p).values.control).port;
      const named = ports(c).find((x) => x.name === "control");
      assert.ok(named, `${p.owner}: a port named control`);
      assert.equal(
        named.containerPort,
        control,
        `${p.owner}: the control port is the one --control listens on`,
      );
      const probe = (k: string) => obj(obj(c[k], `${p.owner} ${k}`).httpGet, `${k}.httpGet`);
      assert.equal(probe("readinessProbe").path, READY_PATH);
      assert.equal(probe("livenessProbe").path, HEALTH_PATH);
      for (const k of ["readinessProbe", "livenessProbe"]) {
        const port = probe(k).port;
        assert.ok(port === "control" || port === control, `${p.owner} ${k} port`);
      }
      const res = obj(obj(c.resources, "resources").requests, `${p.owner} requests`);
      assert.ok(res.cpu && res.memory, `${p.owner}: cpu and memory requests`);
    }
    for (const p of pods) {
      assert.ok(
        obj(obj(container(p).resources, "resources").requests, "requests").memory,
        `${p.owner}: requests`,
      );
    }
  });

  test("pods meet the restricted Pod Security Standard", () => {
    for (const p of pods) {
      const psc = obj(p.spec.securityContext, `${p.owner} securityContext`);
      assert.equal(psc.runAsNonRoot, true, p.owner);
      assert.notEqual(psc.runAsUser, 0, p.owner);
      assert.equal(obj(psc.seccompProfile, "seccompProfile").type, "RuntimeDefault", p.owner);
      const sc = obj(container(p).securityContext, `${p.owner} container securityContext`);
      assert.equal(sc.allowPrivilegeEscalation, false, p.owner);
      assert.deepEqual(obj(sc.capabilities, "capabilities").drop, ["ALL"], p.owner);
      assert.equal(sc.readOnlyRootFilesystem, true, p.owner);
      assert.equal(p.spec.automountServiceAccountToken, false, `${p.owner}: no API token`);
    }
  });

  test("the key and token come from the Secret, mounted where the flags read them", () => {
    const gen = arr(kustomization(K8S).secretGenerator, "secretGenerator").map((g) => obj(g, "generator"));
    const secret = gen.find((g) => g.name === "remusd-secrets");
    assert.ok(secret, "a Secret remusd-secrets");
    const keys = new Set(
      arr(secret.files, "files").map((f) => posix.basename(str(f, "file").split("=")[0] as string)),
    );
    for (const component of ["primary", "backup"]) {
      const p = pod(component);
      const vol = arr(p.spec.volumes, "volumes")
        .map((v) => obj(v, "volume"))
        .find((v) => v.secret !== undefined && obj(v.secret, "secret").secretName === "remusd-secrets");
      assert.ok(vol, `${p.owner} mounts the Secret`);
      const mount = arr(container(p).volumeMounts, "volumeMounts")
        .map((m) => obj(m, "mount"))
        .find((m) => m.name === vol.name);
      assert.ok(mount, `${p.owner}: the Secret volume is mounted`);
      assert.equal(mount.readOnly, true);
      const v = commandOf(p).values;
      for (const flag of ["auth-key-file", "api-token-file"]) {
        const path = str(v[flag], `--${flag}`);
        assert.equal(posix.dirname(path), mount.mountPath, `${p.owner} --${flag} is in the Secret mount`);
        assert.ok(
          keys.has(posix.basename(path)),
          `${p.owner} --${flag}: the Secret has key ${posix.basename(path)}`,
        );
      }
      const dataDir = str(v["data-dir"], "--data-dir");
      const mounts = arr(container(p).volumeMounts, "volumeMounts").map((m) =>
        str(obj(m, "mount").mountPath, "mountPath"),
      );
      assert.ok(
        mounts.includes(dataDir),
        `${p.owner}: --data-dir is a volume (the root file system is read-only)`,
      );
    }
    assert.match(readText(`${K8S}/secrets/.gitignore`), /^\*$/m, "generated secrets stay out of git");
  });

  test("the NetworkPolicy lets only the pair talk on the replication port", () => {
    const np = core.filter((m) => m.kind === "NetworkPolicy");
    assert.equal(np.length, 1);
    const spec = obj((np[0] as Manifest).doc.spec, "spec");
    const sel = matchLabels(spec.podSelector, "podSelector");
    const pair = [pod("primary"), pod("backup")];
    for (const p of pair) assert.ok(matches(sel, p.labels), `it applies to ${p.owner}`);
    for (const p of pods.filter((x) => !pair.includes(x)))
      assert.ok(!matches(sel, p.labels), `not to ${p.owner}`);
    assert.deepEqual(spec.policyTypes, ["Ingress"]);
    const rules = arr(spec.ingress, "ingress").map((r) => obj(r, "rule"));
    let replicationRules = 0;
    for (const r of rules) {
      // A rule without ports would open every port, the replication port too.
      const rp = arr(r.ports, "a rule's ports").map((x) => obj(x, "port"));
      if (!rp.some((x) => Number(x.port) === DEFAULT_PORTS.replication || x.port === "replication")) continue;
      replicationRules++;
      const from = arr(r.from, "the replication rule's from").map((f) => obj(f, "peer"));
      assert.ok(from.length > 0, "the replication port is open to named peers only");
      for (const f of from) {
        assert.deepEqual(
          Object.keys(f),
          ["podSelector"],
          "only pods of this namespace, no ipBlock or namespaceSelector",
        );
        const peerSel = matchLabels(f.podSelector, "from.podSelector");
        for (const p of pair) assert.ok(matches(peerSel, p.labels), `${p.owner} may connect`);
        for (const p of pods.filter((x) => !pair.includes(x)))
          assert.ok(!matches(peerSel, p.labels), `${p.owner} may not`);
      }
    }
    assert.equal(replicationRules, 1, "one rule for the replication port");
  });

  test("the PodDisruptionBudget blocks voluntary evictions of the pair", () => {
    const spec = obj(find("PodDisruptionBudget", "remusd-demo").spec, "pdb");
    const sel = matchLabels(spec.selector, "pdb selector");
    for (const c of ["primary", "backup"]) assert.ok(matches(sel, pod(c).labels), c);
    // The primary has no controller: only an integer minAvailable works for it.
    assert.equal(spec.minAvailable, 2);
  });

  test("the PodMonitor scrapes both daemons; the PrometheusRule equals deploy/prometheus/rules", () => {
    const spec = obj(find("PodMonitor", "remusd").spec, "podmonitor");
    const sel = matchLabels(spec.selector, "podmonitor selector");
    for (const c of ["primary", "backup"]) {
      const p = pod(c);
      assert.ok(matches(sel, p.labels), `it selects ${p.owner}`);
      // The rules select job="remusd".
      assert.equal(p.labels[str(spec.jobLabel, "jobLabel")], "remusd", "the job label is remusd");
    }
    const eps = arr(spec.podMetricsEndpoints, "podMetricsEndpoints").map((e) => obj(e, "endpoint"));
    assert.equal(eps.length, 1);
    const ep = eps[0] as Obj;
    assert.equal(ep.path, METRICS_PATH);
    for (const c of ["primary", "backup"]) {
      assert.ok(
        ports(container(pod(c))).some((x) => x.name === ep.port),
        `port ${ep.port} exists on the ${c}`,
      );
    }
    const relabel = arr(ep.relabelings ?? [], "relabelings").map((r) => obj(r, "relabeling"));
    assert.ok(
      relabel.some((r) => r.targetLabel === "domain"),
      "a domain label, as the rules and dashboard group by it",
    );
    const rule = obj(find("PrometheusRule", "remusd").spec, "prometheusrule");
    assert.deepEqual(rule.groups, obj(readYaml("deploy/prometheus/rules/remusd.yml"), "rules").groups);
  });

  test("images are the one the kustomization rewrites", () => {
    const images = new Set(
      arr(kustomization(K8S).images, "images").map((i) => str(obj(i, "image").name, "name")),
    );
    for (const p of pods) {
      const image = str(container(p).image, "image").replace(/:[^/:]+$/, "");
      assert.ok(images.has(image), `${p.owner}: image ${image} is in kustomization images`);
    }
  });

  test("README says how to apply it and what a node loss does", () => {
    const readme = readText(`${K8S}/README.md`);
    assert.match(readme, /kubectl apply -k deploy\/kubernetes\b/);
    assert.match(readme, /gen-secrets\.sh deploy\/kubernetes\/secrets/);
    assert.match(readme, /node.{0,40}(lost|loss|fails|dies)/i);
  });

  test("kubectl kustomize renders both kustomizations", (t) => {
    if (spawnSync("kubectl", ["version", "--client"]).error) {
      t.skip("kubectl is not installed (optional: the parse checks above do not need it)");
      return;
    }
    const tmp = mkdtempSync(join(tmpdir(), "remusd-k8s-"));
    try {
      const dir = join(tmp, "kubernetes");
      cpSync(join(DEPLOY, "kubernetes"), dir, { recursive: true });
      assert.equal(spawnSync("sh", [join(DEPLOY, "gen-secrets.sh"), join(dir, "secrets")]).status, 0);
      const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      const docs = parseAllDocuments(r.stdout).map((d) => obj(d.toJS(), "doc"));
      const secret = docs.find((d) => d.kind === "Secret");
      assert.ok(secret, "the Secret is generated");
      const name = str(obj(secret.metadata, "metadata").name, "secret name");
      assert.match(name, /^remusd-secrets-/, "with a content hash");
      assert.deepEqual(Object.keys(obj(secret.data, "data")).sort(), ["api_token", "auth_key"]);
      for (const d of docs) assert.equal(obj(d.metadata, "metadata").namespace ?? "remusd", "remusd");
      // References to the Secret follow the hashed name.
      assert.equal((r.stdout.match(new RegExp(`secretName: ${name}`, "g")) ?? []).length, 2);
      const mon = spawnSync("kubectl", ["kustomize", join(dir, "monitoring")], { encoding: "utf8" });
      assert.equal(mon.status, 0, mon.stderr);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

// Package k8s holds the Kubernetes deployment (kustomization.yaml and the
// manifests it lists). Its tests decode every manifest strictly with the
// Kubernetes API types, check the wiring between them (ports, names,
// labels, the world size and the restart budget), and run the coordinator
// and the Indexed Job's workers on 127.0.0.1 as a cluster would start them.
package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's schema this deployment uses;
// decoded strictly, anything else in the file is an error.
type kustomization struct {
	APIVersion      string            `json:"apiVersion"`
	Kind            string            `json:"kind"`
	Resources       []string          `json:"resources,omitempty"`
	Components      []string          `json:"components,omitempty"`
	SecretGenerator []secretGenerator `json:"secretGenerator,omitempty"`
	Images          []kustomizeImage  `json:"images,omitempty"`
	Patches         []kustomizePatch  `json:"patches,omitempty"`
}

type secretGenerator struct {
	Name string   `json:"name"`
	Envs []string `json:"envs"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

type kustomizePatch struct {
	Target struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"target"`
	Patch string `json:"patch"`
}

// jsonPatchOp is one operation of a kustomize JSON 6902 patch.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// deployment is a set of manifests decoded with the Kubernetes API types:
// deploy/k8s's files, or kubectl kustomize's output.
type deployment struct {
	services []*corev1.Service
	jobs     []*batchv1.Job
	claims   []*corev1.PersistentVolumeClaim
	// secrets: the Secrets' names and keys; the generated Secret's value
	// is not in the repository (job-token.env is git-ignored).
	secrets map[string][]string
}

// apiDecoder decodes YAML as the API server does with field validation
// Strict: into the registered type of the document's apiVersion and kind,
// field names matched case-sensitively, an unknown or duplicate field an
// error.
var apiDecoder = func() runtime.Decoder {
	sc := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, batchv1.AddToScheme} {
		if err := add(sc); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, sc, sc, kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// decodeObjects decodes a YAML stream of Services, Jobs, claims and
// Secrets, each document strictly with its API type.
func decodeObjects(d *deployment, source string, data []byte) error {
	for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(doc), &probe); err != nil {
			return fmt.Errorf("%s, document %d: %w", source, i+1, err)
		}
		if probe == nil {
			continue // comments only
		}
		obj, gvk, err := apiDecoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			return fmt.Errorf("%s, document %d (%v): %w", source, i+1, gvk, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			d.services = append(d.services, o)
		case *batchv1.Job:
			d.jobs = append(d.jobs, o)
		case *corev1.PersistentVolumeClaim:
			d.claims = append(d.claims, o)
		case *corev1.Secret:
			if d.secrets == nil {
				d.secrets = map[string][]string{}
			}
			for k := range o.Data {
				d.secrets[o.Name] = append(d.secrets[o.Name], k)
			}
		default:
			return fmt.Errorf("%s, document %d: unexpected %v", source, i+1, gvk)
		}
	}
	return nil
}

// strictYAML decodes a kustomization like apiDecoder an API object: an
// unknown or duplicate field is an error, and so is a field name that
// matches only case-insensitively (encoding/json would take Resources for
// resources): the decoded value, encoded again, must be the document.
func strictYAML(data []byte, into any) error {
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return err
	}
	var doc, back any
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	b, err := json.Marshal(into)
	if err != nil {
		return err
	}
	if err := errors.Join(json.Unmarshal(j, &doc), json.Unmarshal(b, &back)); err != nil {
		return err
	}
	if path, ok := lost(doc, back, ""); ok {
		return fmt.Errorf("field %s: unknown (names are case-sensitive)", path)
	}
	return nil
}

// lost returns the path of a field of doc that is not in back.
func lost(doc, back any, path string) (string, bool) {
	switch d := doc.(type) {
	case map[string]any:
		b, _ := back.(map[string]any)
		for k, v := range d {
			bv, ok := b[k]
			if !ok {
				return path + "." + k, true
			}
			if p, ok := lost(v, bv, path+"."+k); ok {
				return p, true
			}
		}
	case []any:
		b, _ := back.([]any)
		for i, v := range d {
			if i >= len(b) {
				return fmt.Sprintf("%s[%d]", path, i), true
			}
			if p, ok := lost(v, b[i], fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// source is deploy/k8s as committed: the kustomization and its manifests.
type source struct {
	dir string
	kz  kustomization
	deployment
}

// loadSource decodes dir's kustomization.yaml and every resource it lists;
// the generated Secret gets the keys of its env file's .example.
func loadSource(dir string) (*source, error) {
	s := &source{dir: dir}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	if err := strictYAML(data, &s.kz); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	for _, r := range s.kz.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, fmt.Errorf("kustomization.yaml lists %s: %w", r, err)
		}
		if err := decodeObjects(&s.deployment, r, data); err != nil {
			return nil, err
		}
	}
	s.secrets = map[string][]string{}
	for _, g := range s.kz.SecretGenerator {
		for _, env := range g.Envs {
			keys, err := envFileKeys(filepath.Join(dir, env+".example"))
			if err != nil {
				return nil, fmt.Errorf("secretGenerator %s: %w (the committed example of the git-ignored %s)", g.Name, err, env)
			}
			s.secrets[g.Name] = append(s.secrets[g.Name], keys...)
		}
	}
	return s, nil
}

// envFileKeys returns the keys of a kustomize env file (KEY=value lines,
// # comments).
func envFileKeys(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not KEY=value", path, line)
		}
		keys = append(keys, k)
	}
	return keys, sc.Err()
}

// cmdline is a container's args: the subcommand, then flags written
// --name=value (or --name alone for a boolean), one per item.
type cmdline struct {
	sub   string
	flags map[string][]string
}

func parseArgs(list []string) (cmdline, error) {
	c := cmdline{flags: map[string][]string{}}
	if len(list) == 0 || strings.HasPrefix(list[0], "-") {
		return c, fmt.Errorf("args %q: want the subcommand first (the image's entrypoint is hjepa)", list)
	}
	c.sub = list[0]
	for _, a := range list[1:] {
		name, val, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(name, "--") || len(name) < 3 {
			return c, fmt.Errorf("args: %q: write each flag as one item --name=value", a)
		}
		c.flags[name[2:]] = append(c.flags[name[2:]], val)
	}
	return c, nil
}

// one returns the flag's single value.
func (c cmdline) one(name string) (string, bool) {
	v := c.flags[name]
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// role is one of the two pod templates: the coordinator's or the workers'.
type role struct {
	job       *batchv1.Job
	pod       *corev1.PodSpec
	labels    map[string]string
	container *corev1.Container
	args      cmdline
}

func (r *role) env(name string) (corev1.EnvVar, bool) {
	for _, e := range r.container.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// containerPort resolves a Service's targetPort (a name, a number, or
// unset: the Service's port) against this container's ports.
func (r *role) containerPort(sp corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	if tp.Type == intstr.String {
		for _, p := range r.container.Ports {
			if p.Name == tp.StrVal {
				return p.ContainerPort, true
			}
		}
		return 0, false
	}
	n := tp.IntVal
	if n == 0 {
		n = sp.Port
	}
	for _, p := range r.container.Ports {
		if p.ContainerPort == n {
			return n, true
		}
	}
	return 0, false
}

// mountOf returns the volume mounted at path and its claim.
func (r *role) mountOf(path string) (volume, claim string, ok bool) {
	for _, m := range r.container.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			for _, v := range r.pod.Volumes {
				if v.Name == m.Name && v.PersistentVolumeClaim != nil {
					return v.Name, v.PersistentVolumeClaim.ClaimName, true
				}
			}
			return m.Name, "", false
		}
	}
	return "", "", false
}

// roles finds the coordinator's and the workers' Jobs by their
// containers' subcommand.
func (d *deployment) roles() (coord, workers *role, err error) {
	for _, j := range d.jobs {
		spec := &j.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			return nil, nil, fmt.Errorf("job %s: %d containers, want 1", j.Name, len(spec.Containers))
		}
		c := &spec.Containers[0]
		args, err := parseArgs(c.Args)
		if err != nil {
			return nil, nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		r := &role{job: j, pod: spec, labels: j.Spec.Template.Labels, container: c, args: args}
		switch {
		case args.sub == "coordinator" && coord == nil:
			coord = r
		case args.sub == "worker" && workers == nil:
			workers = r
		default:
			return nil, nil, fmt.Errorf("job %s: subcommand %q: want one coordinator Job and one worker Job", j.Name, args.sub)
		}
	}
	if coord == nil || workers == nil {
		return nil, nil, fmt.Errorf("want a coordinator Job and a worker Job, have %d Jobs", len(d.jobs))
	}
	return coord, workers, nil
}

// selects: the Service's selector picks pods with these labels.
func selects(svc *corev1.Service, labels map[string]string) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// serviceOf returns the one Service that selects r's pods and no other
// role's.
func (d *deployment) serviceOf(r, other *role) (*corev1.Service, error) {
	var found []*corev1.Service
	for _, s := range d.services {
		if selects(s, other.labels) && selects(s, r.labels) {
			return nil, fmt.Errorf("service %s selects both the coordinator's and the workers' pods", s.Name)
		}
		if selects(s, r.labels) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d Services select the pods of job %s, want 1", len(found), r.job.Name)
	}
	return found[0], nil
}

// failureAction is what the Job controller does with a failed pod of job:
// the action of the first podFailurePolicy rule that matches the
// container's exit code (or the pod's condition), else Count.
func failureAction(job *batchv1.Job, container string, exitCode int32, cond corev1.PodConditionType) batchv1.PodFailurePolicyAction {
	if job.Spec.PodFailurePolicy == nil {
		return batchv1.PodFailurePolicyActionCount
	}
	for _, rule := range job.Spec.PodFailurePolicy.Rules {
		if oe := rule.OnExitCodes; oe != nil && exitCode != 0 && (oe.ContainerName == nil || *oe.ContainerName == container) {
			in := slices.Contains(oe.Values, exitCode)
			if in == (oe.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) {
				return rule.Action
			}
		}
		for _, pc := range rule.OnPodConditions {
			if cond != "" && pc.Type == cond && (pc.Status == "" || pc.Status == corev1.ConditionTrue) {
				return rule.Action
			}
		}
	}
	return batchv1.PodFailurePolicyActionCount
}

// jobBackoff is the Job controller's delay before it replaces a pod after
// failures failed ones: 10 s doubling, at most 6 min.
func jobBackoff(failures int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < failures && d < 6*time.Minute; i++ {
		d *= 2
	}
	return min(d, 6*time.Minute)
}

// podStartAllowance is what the rendezvous timeout must leave, after the
// Job's backoff, for scheduling a replacement and pulling its image.
const podStartAllowance = 2 * time.Minute

// checkWiring returns every inconsistency between the objects: what a
// cluster would run but the job could not (ports, names, labels, the
// world size, the restart budget).
func checkWiring(d *deployment) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	coord, workers, err := d.roles()
	if err != nil {
		return []string{err.Error()}
	}
	cf := func(name string) string {
		v, ok := coord.args.one(name)
		if !ok {
			bad("coordinator: want one --%s=..., have %q", name, coord.args.flags[name])
		}
		return v
	}

	// The coordinator, its Service, and the workers' way to it.
	coordSvc, err := d.serviceOf(coord, workers)
	if err != nil {
		bad("coordinator: %v", err)
	}
	_, lport, err := net.SplitHostPort(cf("listen"))
	if err != nil {
		bad("coordinator --listen: %v", err)
	}
	listen, _ := strconv.Atoi(lport)
	masterPort := int32(-1)
	if coordSvc != nil {
		if coordSvc.Spec.ClusterIP == corev1.ClusterIPNone {
			bad("service %s: headless, but the workers dial it as one address", coordSvc.Name)
		}
		if len(coordSvc.Spec.Ports) != 1 {
			bad("service %s: %d ports, want 1", coordSvc.Name, len(coordSvc.Spec.Ports))
		} else if cp, ok := coord.containerPort(coordSvc.Spec.Ports[0]); !ok || int(cp) != listen {
			bad("service %s: targetPort %s is container port %d (found: %v), the coordinator listens on %d",
				coordSvc.Name, coordSvc.Spec.Ports[0].TargetPort.String(), cp, ok, listen)
		} else {
			masterPort = coordSvc.Spec.Ports[0].Port
		}
		addr, _ := workers.env("MASTER_ADDR")
		port, _ := workers.env("MASTER_PORT")
		if addr.Value != coordSvc.Name || port.Value != strconv.Itoa(int(masterPort)) {
			bad("workers: MASTER_ADDR=%q MASTER_PORT=%q, want the coordinator's Service %s and its port %d", addr.Value, port.Value, coordSvc.Name, masterPort)
		}
	}
	if _, ok := workers.args.flags["coordinator"]; ok {
		bad("workers: --coordinator given: the workers find the coordinator through MASTER_ADDR and MASTER_PORT")
	}

	// The world size, written three times.
	world, err := strconv.Atoi(cf("world-size"))
	if err != nil || world < 1 {
		bad("coordinator --world-size: %v", err)
	}
	ws, _ := workers.env("WORLD_SIZE")
	js := workers.job.Spec
	if js.Completions == nil || js.Parallelism == nil || int(*js.Completions) != world || int(*js.Parallelism) != world || ws.Value != strconv.Itoa(world) {
		bad("job %s: completions %v, parallelism %v, WORLD_SIZE %q: want the coordinator's --world-size %d for all three",
			workers.job.Name, deref(js.Completions), deref(js.Parallelism), ws.Value, world)
	}

	// The workers: Indexed, their rank the completion index, their
	// advertised address their stable DNS name.
	if js.CompletionMode == nil || *js.CompletionMode != batchv1.IndexedCompletion {
		bad("job %s: completionMode %v, want Indexed (JOB_COMPLETION_INDEX is the rank)", workers.job.Name, js.CompletionMode)
	}
	if _, ok := workers.args.flags["rank"]; ok {
		bad("workers: --rank given: the rank is JOB_COMPLETION_INDEX")
	}
	if _, ok := workers.env("RANK"); ok {
		bad("workers: RANK set: the rank is JOB_COMPLETION_INDEX")
	}
	headless, err := d.serviceOf(workers, coord)
	if err != nil {
		bad("workers: %v", err)
	}
	wl, _ := workers.args.one("listen")
	_, wport, err := net.SplitHostPort(wl)
	if err != nil {
		bad("workers --listen %q: %v", wl, err)
	}
	ring, _ := strconv.Atoi(wport)
	if headless != nil {
		if headless.Spec.ClusterIP != corev1.ClusterIPNone {
			bad("service %s: clusterIP %q, want None (headless: a DNS name per worker pod)", headless.Name, headless.Spec.ClusterIP)
		}
		if !headless.Spec.PublishNotReadyAddresses {
			bad("service %s: publishNotReadyAddresses false: a worker's name would resolve only once it is Ready", headless.Name)
		}
		if workers.pod.Subdomain != headless.Name {
			bad("job %s: subdomain %q, want the headless Service's name %q", workers.job.Name, workers.pod.Subdomain, headless.Name)
		}
		for _, sp := range headless.Spec.Ports {
			if cp, ok := workers.containerPort(sp); !ok || int(cp) != ring || sp.Port != cp {
				bad("service %s: port %d -> %s (container port %d, %v), the workers listen on %d", headless.Name, sp.Port, sp.TargetPort.String(), cp, ok, ring)
			}
		}
		want := fmt.Sprintf("%s-$(JOB_COMPLETION_INDEX).%s:%d", workers.job.Name, headless.Name, ring)
		if adv, _ := workers.args.one("advertise"); adv != want {
			bad("workers: --advertise=%q, want %q (the pod's hostname <job>-<index>, its subdomain, its --listen port)", adv, want)
		}
	}
	if !slices.ContainsFunc(workers.container.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == ring }) {
		bad("workers: no container port %d (--listen)", ring)
	}
	if dev, _ := workers.args.one("device"); dev == "cuda" {
		if q, ok := workers.container.Resources.Limits["nvidia.com/gpu"]; !ok || q.Value() != 1 {
			bad("workers: --device=cuda without the limit nvidia.com/gpu: 1")
		}
	}

	// Restarts: the workers' Job replaces a crashed pod as often as the
	// coordinator restarts a generation, soon enough for its rendezvous.
	restarts, err := strconv.Atoi(cf("max-restarts"))
	if err != nil {
		bad("coordinator --max-restarts: %v", err)
	}
	rdzv, err := time.ParseDuration(cf("rendezvous-timeout"))
	if err != nil {
		bad("coordinator --rendezvous-timeout: %v", err)
	}
	if cj := coord.job.Spec; cj.BackoffLimit == nil || *cj.BackoffLimit != 0 || coord.pod.RestartPolicy != corev1.RestartPolicyNever {
		bad("job %s: backoffLimit %v, restartPolicy %q: want 0 and Never (a restarted coordinator has lost the job's state)",
			coord.job.Name, deref(cj.BackoffLimit), coord.pod.RestartPolicy)
	}
	if workers.pod.RestartPolicy != corev1.RestartPolicyNever {
		bad("job %s: restartPolicy %q, want Never (podFailurePolicy needs it)", workers.job.Name, workers.pod.RestartPolicy)
	}
	if js.BackoffLimit == nil || int(*js.BackoffLimit) != restarts {
		bad("job %s: backoffLimit %v, want the coordinator's --max-restarts %d", workers.job.Name, deref(js.BackoffLimit), restarts)
	}
	if js.BackoffLimitPerIndex != nil && int(*js.BackoffLimitPerIndex) > restarts {
		bad("job %s: backoffLimitPerIndex %d exceeds the coordinator's --max-restarts %d", workers.job.Name, *js.BackoffLimitPerIndex, restarts)
	}
	if js.PodReplacementPolicy == nil || *js.PodReplacementPolicy != batchv1.Failed {
		bad("job %s: podReplacementPolicy %v, want Failed (a replacement takes the old pod's hostname)", workers.job.Name, js.PodReplacementPolicy)
	}
	name := workers.container.Name
	for _, c := range []struct {
		code int32
		cond corev1.PodConditionType
		want batchv1.PodFailurePolicyAction
		why  string
	}{
		{137, "", batchv1.PodFailurePolicyActionCount, "a killed worker (137) must be replaced"},
		{2, "", batchv1.PodFailurePolicyActionCount, "a crashed worker (2) must be replaced"},
		{1, "", batchv1.PodFailurePolicyActionFailJob, "a worker that exits 1 was told the job failed, or lost the coordinator"},
		{143, corev1.DisruptionTarget, batchv1.PodFailurePolicyActionIgnore, "an evicted worker's replacement is the coordinator's to count"},
	} {
		if got := failureAction(workers.job, name, c.code, c.cond); got != c.want {
			bad("job %s: podFailurePolicy gives %s to exit %d %s, want %s: %s", workers.job.Name, got, c.code, c.cond, c.want, c.why)
		}
	}
	if b := jobBackoff(restarts); b+podStartAllowance > rdzv {
		bad("coordinator --rendezvous-timeout=%v: shorter than the Job's backoff before replacement %d (%v) plus %v to start the pod", rdzv, restarts, b, podStartAllowance)
	}
	if ct, _ := workers.args.one("connect-timeout"); ct != "" {
		if d, err := time.ParseDuration(ct); err != nil || d < time.Minute {
			bad("workers --connect-timeout=%s: want a duration of a minute or more (the coordinator's pod may start later)", ct)
		}
	}

	// Both pods: the token, the output volume, no HJEPA_* service links.
	out := cf("out")
	var claim string
	for _, r := range []*role{coord, workers} {
		who := "job " + r.job.Name
		tok, ok := r.env("HJEPA_JOB_TOKEN")
		if !ok || tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil {
			bad("%s: HJEPA_JOB_TOKEN not from a Secret (secretKeyRef)", who)
		} else if ref := tok.ValueFrom.SecretKeyRef; !slices.Contains(d.secrets[ref.Name], ref.Key) {
			bad("%s: HJEPA_JOB_TOKEN from Secret %q key %q: no such Secret or key (have %v)", who, ref.Name, ref.Key, d.secrets)
		}
		if r.pod.EnableServiceLinks == nil || *r.pod.EnableServiceLinks {
			bad("%s: enableServiceLinks not false: HJEPA_COORDINATOR_SERVICE_HOST and the like are refused as configuration keys", who)
		}
		vol, c, ok := r.mountOf(out)
		if !ok {
			bad("%s: the coordinator's --out=%s is not on a PersistentVolumeClaim mounted there (volume %q)", who, out, vol)
			continue
		}
		if claim == "" {
			claim = c
		} else if c != claim {
			bad("%s: --out=%s is on claim %q, the coordinator's on %q", who, out, c, claim)
		}
		if r != workers {
			continue
		}
		for _, m := range r.container.VolumeMounts {
			for _, cm := range coord.container.VolumeMounts {
				if m.Name == vol && cm.Name == vol && m.MountPath != cm.MountPath {
					bad("%s: mounts %s at %s, the coordinator at %s: the workers get --out's path from it", who, vol, m.MountPath, cm.MountPath)
				}
			}
		}
	}
	if claim != "" {
		i := slices.IndexFunc(d.claims, func(c *corev1.PersistentVolumeClaim) bool { return c.Name == claim })
		if i < 0 {
			bad("no PersistentVolumeClaim %q", claim)
		} else if !slices.Contains(d.claims[i].Spec.AccessModes, corev1.ReadWriteMany) {
			bad("claim %s: access modes %v, want ReadWriteMany (pods on several nodes)", claim, d.claims[i].Spec.AccessModes)
		}
	}

	// Metrics: --metrics-listen's port is the container port "metrics" and
	// the pod's prometheus.io/port annotation.
	for _, r := range []*role{coord, workers} {
		addr, ok := r.args.one("metrics-listen")
		if !ok {
			bad("job %s: want one --metrics-listen=...", r.job.Name)
			continue
		}
		_, mport, _ := net.SplitHostPort(addr)
		var named string
		for _, cp := range r.container.Ports {
			if cp.Name == "metrics" {
				named = strconv.Itoa(int(cp.ContainerPort))
			}
		}
		ann := r.job.Spec.Template.Annotations
		if named != mport || ann["prometheus.io/port"] != mport || ann["prometheus.io/scrape"] != "true" {
			bad("job %s: --metrics-listen port %s, container port \"metrics\" %q, prometheus.io/port %q, prometheus.io/scrape %q: want the same port, scrape \"true\"",
				r.job.Name, mport, named, ann["prometheus.io/port"], ann["prometheus.io/scrape"])
		}
	}

	// $(VAR) in args and env: Kubernetes leaves an unknown one as it is.
	for _, r := range []*role{coord, workers} {
		defined := map[string]bool{}
		if r == workers {
			defined["JOB_COMPLETION_INDEX"] = true
		}
		for _, e := range r.container.Env {
			defined[e.Name] = true
		}
		for _, s := range append(append([]string{}, r.container.Args...), r.container.Command...) {
			for _, m := range varRef.FindAllStringSubmatch(s, -1) {
				if !defined[m[1]] {
					bad("job %s: %q refers to $(%s), which is not in the container's environment", r.job.Name, s, m[1])
				}
			}
		}
	}
	return probs
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// checkKustomization checks the kustomization against its directory:
// every manifest listed and every listed file there, the Secret's input
// git-ignored, every image with an images entry, every component's patch
// pointing at what it means to change.
func checkKustomization(s *source) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if s.kz.APIVersion != "kustomize.config.k8s.io/v1beta1" || s.kz.Kind != "Kustomization" {
		bad("kustomization.yaml: apiVersion %q kind %q", s.kz.APIVersion, s.kz.Kind)
	}
	var files []string
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) && e.Name() != "kustomization.yaml" {
			files = append(files, e.Name())
		}
	}
	for _, f := range files {
		if !slices.Contains(s.kz.Resources, f) {
			bad("%s is not in kustomization.yaml's resources", f)
		}
	}
	for _, r := range s.kz.Resources {
		if !slices.Contains(files, r) {
			bad("kustomization.yaml lists %s, which is not a manifest in %s", r, s.dir)
		}
	}
	if len(s.kz.SecretGenerator) == 0 {
		bad("kustomization.yaml: no secretGenerator for the job token")
	}
	ignored, _ := os.ReadFile(filepath.Join(s.dir, ".gitignore"))
	for _, g := range s.kz.SecretGenerator {
		for _, env := range g.Envs {
			if !slices.Contains(strings.Fields(string(ignored)), env) {
				bad("secretGenerator %s: %s is not in %s/.gitignore: a real token would be committed", g.Name, env, s.dir)
			}
		}
	}
	for _, j := range s.jobs {
		for _, c := range j.Spec.Template.Spec.Containers {
			name, _, _ := strings.Cut(c.Image, ":")
			if !slices.ContainsFunc(s.kz.Images, func(im kustomizeImage) bool { return im.Name == name }) {
				bad("job %s: image %q has no entry in kustomization.yaml's images", j.Name, c.Image)
			}
		}
	}
	text, _ := os.ReadFile(filepath.Join(s.dir, "kustomization.yaml"))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name(), "kustomization.yaml"))
		if err != nil {
			continue
		}
		var comp kustomization
		if err := strictYAML(data, &comp); err != nil {
			bad("%s/kustomization.yaml: %v", e.Name(), err)
			continue
		}
		if comp.Kind != "Component" {
			bad("%s/kustomization.yaml: kind %q, want Component (an overlay below its base is a kustomize cycle)", e.Name(), comp.Kind)
		}
		if !strings.Contains(string(text), "components: ["+e.Name()+"]") {
			bad("kustomization.yaml does not mention the component %s (components: [%s])", e.Name(), e.Name())
		}
		probs = append(probs, checkPatches(s, e.Name(), comp.Patches)...)
	}
	return probs
}

// checkPatches checks that every JSON patch operation of a component
// addresses something in its target, and that its tests hold.
func checkPatches(s *source, comp string, patches []kustomizePatch) []string {
	var probs []string
	for _, p := range patches {
		i := slices.IndexFunc(s.jobs, func(j *batchv1.Job) bool { return p.Target.Kind == "Job" && j.Name == p.Target.Name })
		if i < 0 {
			probs = append(probs, fmt.Sprintf("%s: patch targets %s %s, which is not in the deployment", comp, p.Target.Kind, p.Target.Name))
			continue
		}
		var ops []jsonPatchOp
		if err := strictYAML([]byte(p.Patch), &ops); err != nil {
			probs = append(probs, fmt.Sprintf("%s: patch of %s: %v", comp, p.Target.Name, err))
			continue
		}
		var doc any
		data, _ := json.Marshal(s.jobs[i])
		_ = json.Unmarshal(data, &doc)
		for _, op := range ops {
			path := op.Path
			if op.Op == "add" {
				path = path[:strings.LastIndex(path, "/")]
			}
			v, ok := jsonPointer(doc, path)
			switch {
			case !ok:
				probs = append(probs, fmt.Sprintf("%s: %s %s: no such path in job %s", comp, op.Op, op.Path, p.Target.Name))
			case op.Op == "test" && !reflect.DeepEqual(v, op.Value):
				probs = append(probs, fmt.Sprintf("%s: test %s: job %s has %v, the patch expects %v", comp, op.Path, p.Target.Name, v, op.Value))
			}
		}
	}
	return probs
}

// jsonPointer resolves an RFC 6901 pointer in a decoded JSON document.
func jsonPointer(doc any, ptr string) (any, bool) {
	if ptr == "" {
		return doc, true
	}
	for _, tok := range strings.Split(ptr, "/")[1:] {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch x := doc.(type) {
		case map[string]any:
			v, ok := x[tok]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			doc = x[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

func mustLoad(t *testing.T) *source {
	t.Helper()
	s, err := loadSource(".")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestManifestsWiring decodes deploy/k8s strictly and checks that what it
// wires together fits.
func TestManifestsWiring(t *testing.T) {
	s := mustLoad(t)
	if len(s.services) != 2 || len(s.jobs) != 2 || len(s.claims) != 1 {
		t.Errorf("%d Services, %d Jobs, %d claims: want 2, 2, 1", len(s.services), len(s.jobs), len(s.claims))
	}
	for _, p := range append(checkKustomization(s), checkWiring(&s.deployment)...) {
		t.Error(p)
	}
}

// TestManifestsWiringCatchesMistakes: each mistake, made in the decoded
// manifests, is reported.
func TestManifestsWiringCatchesMistakes(t *testing.T) {
	worker := func(s *source) *batchv1.Job { _, w, _ := s.roles(); return w.job }
	coordinator := func(s *source) *batchv1.Job { c, _, _ := s.roles(); return c.job }
	wc := func(s *source) *corev1.Container { return &worker(s).Spec.Template.Spec.Containers[0] }
	cc := func(s *source) *corev1.Container { return &coordinator(s).Spec.Template.Spec.Containers[0] }
	svc := func(s *source, name string) *corev1.Service {
		for _, x := range s.services {
			if x.Name == name {
				return x
			}
		}
		t.Fatalf("no service %s", name)
		return nil
	}
	setArg := func(c *corev1.Container, flag, val string) {
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--"+flag+"=") {
				c.Args[i] = "--" + flag + "=" + val
				return
			}
		}
		t.Fatalf("no --%s in %q", flag, c.Args)
	}
	setEnv := func(c *corev1.Container, name, val string) {
		for i := range c.Env {
			if c.Env[i].Name == name {
				c.Env[i].Value = val
				return
			}
		}
		t.Fatalf("no env %s", name)
	}
	i32 := func(n int32) *int32 { return &n }
	for _, c := range []struct {
		name    string
		mistake func(s *source)
		want    string // in one of the problems
	}{
		{"completions", func(s *source) { worker(s).Spec.Completions = i32(3) }, "completions"},
		{"world size env", func(s *source) { setEnv(wc(s), "WORLD_SIZE", "4") }, "WORLD_SIZE"},
		{"world size flag", func(s *source) { setArg(cc(s), "world-size", "4") }, "world-size"},
		{"subdomain", func(s *source) { worker(s).Spec.Template.Spec.Subdomain = "hjepa-worker" }, "subdomain"},
		{"advertise host", func(s *source) {
			setArg(wc(s), "advertise", "hjepa-workers-$(JOB_COMPLETION_INDEX).hjepa-workers:29600")
		}, "--advertise"},
		{"ring port", func(s *source) { setArg(wc(s), "listen", "0.0.0.0:29601") }, "listen on 29601"},
		{"coordinator port", func(s *source) { setArg(cc(s), "listen", "0.0.0.0:29501") }, "listens on 29501"},
		{"service targetPort", func(s *source) {
			svc(s, "hjepa-coordinator").Spec.Ports[0].TargetPort = intstr.FromString("rpc")
		}, "targetPort"},
		{"MASTER_PORT", func(s *source) { setEnv(wc(s), "MASTER_PORT", "29501") }, "MASTER_PORT"},
		{"MASTER_ADDR", func(s *source) { setEnv(wc(s), "MASTER_ADDR", "coordinator") }, "MASTER_ADDR"},
		{"secret key", func(s *source) { cc(s).Env[0].ValueFrom.SecretKeyRef.Key = "HJEPA_JOB_TOKEN" }, "no such Secret or key"},
		{"secret name", func(s *source) { wc(s).Env[3].ValueFrom.SecretKeyRef.Name = "hjepa-token" }, "no such Secret or key"},
		{"claim", func(s *source) {
			worker(s).Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName = "hjepa-output"
		}, "claim"},
		{"mount path", func(s *source) { wc(s).VolumeMounts[0].MountPath = "/output" }, "not on a PersistentVolumeClaim"},
		{"selector", func(s *source) {
			svc(s, "hjepa-workers").Spec.Selector["app.kubernetes.io/component"] = "workers"
		}, "0 Services select"},
		{"backoffLimit", func(s *source) { worker(s).Spec.BackoffLimit = i32(6) }, "backoffLimit"},
		{"coordinator restarts", func(s *source) { coordinator(s).Spec.BackoffLimit = i32(2) }, "backoffLimit"},
		{"no podFailurePolicy", func(s *source) { worker(s).Spec.PodFailurePolicy = nil }, "exit 1"},
		{"service links", func(s *source) { coordinator(s).Spec.Template.Spec.EnableServiceLinks = nil }, "enableServiceLinks"},
		{"rendezvous", func(s *source) { setArg(cc(s), "rendezvous-timeout", "1m") }, "rendezvous-timeout"},
		{"no gpu", func(s *source) { delete(wc(s).Resources.Limits, "nvidia.com/gpu") }, "nvidia.com/gpu"},
		{"unset variable", func(s *source) { setArg(wc(s), "advertise", "$(POD_NAME).hjepa-workers:29600") }, "$(POD_NAME)"},
		{"unlisted file", func(s *source) { s.kz.Resources = s.kz.Resources[1:] }, "not in kustomization.yaml's resources"},
		{"image", func(s *source) { s.kz.Images[0].Name = "hjepa-go" }, "images"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustLoad(t)
			c.mistake(s)
			probs := append(checkKustomization(s), checkWiring(&s.deployment)...)
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("no problem mentions %q; problems: %q", c.want, probs)
			}
		})
	}
}

// TestKustomizeBuild runs kubectl kustomize, as kubectl apply -k would,
// and checks its output like the files: the generated Secret's hashed name
// reaches both pods, the images entry applies, and the cpu component turns
// the workers into CPU workers.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: this test builds deploy/k8s with kubectl kustomize")
	}
	s := mustLoad(t)
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", ".", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy deploy/k8s: %v\n%s", err, out)
	}
	for _, g := range s.kz.SecretGenerator {
		for _, env := range g.Envs {
			if err := os.WriteFile(filepath.Join(dir, env), []byte("token=0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	build := func(t *testing.T) *deployment {
		t.Helper()
		out, err := exec.Command(kubectl, "kustomize", dir).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("kubectl kustomize: %v\n%s", err, stderr)
		}
		d := &deployment{}
		if err := decodeObjects(d, "kubectl kustomize", out); err != nil {
			t.Fatal(err)
		}
		for _, p := range checkWiring(d) {
			t.Error(p)
		}
		if len(d.secrets) != 1 {
			t.Fatalf("kustomize made %d Secrets, want 1", len(d.secrets))
		}
		for name := range d.secrets {
			if !strings.HasPrefix(name, s.kz.SecretGenerator[0].Name+"-") {
				t.Errorf("Secret %s: want the generator's name and a hash", name)
			}
		}
		im := s.kz.Images[0]
		for _, j := range d.jobs {
			if c := j.Spec.Template.Spec.Containers[0]; c.Image != im.NewName+":"+im.NewTag {
				t.Errorf("job %s: image %s, want %s:%s", j.Name, c.Image, im.NewName, im.NewTag)
			}
		}
		return d
	}
	t.Run("gpu", func(t *testing.T) {
		_, w, err := build(t).roles()
		if err != nil {
			t.Fatal(err)
		}
		if dev, _ := w.args.one("device"); dev != "cuda" {
			t.Errorf("workers: --device=%s, want cuda", dev)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		kz, _ := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		on := regexp.MustCompile(`(?m)^# (components: \[cpu\])`).ReplaceAll(kz, []byte("$1"))
		if bytes.Equal(on, kz) {
			t.Fatal("kustomization.yaml has no line '# components: [cpu]' to uncomment")
		}
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), on, 0o644); err != nil {
			t.Fatal(err)
		}
		_, w, err := build(t).roles()
		if err != nil {
			t.Fatal(err)
		}
		if dev, _ := w.args.one("device"); dev != "cpu" {
			t.Errorf("workers: --device=%s, want cpu", dev)
		}
		if _, ok := w.container.Resources.Limits["nvidia.com/gpu"]; ok {
			t.Errorf("workers: a GPU limit on CPU workers")
		}
	})
}
